"""benchbox.metrics: pure functions over arrays (labels, probabilities, lesion ids, subgroup
attributes, masks) with lesion-clustered bootstrap CIs. Nothing here takes a model.

Entry points: `evaluate` (every metric of one method), `compare` / `compare_all` (paired tests
between methods), `evaluate_means` (per-image scores such as explanation IoU),
`evaluate_segmentation`, `validate_predictions`, `higher_is_better`. Names and the suites file
are documented in metrics/README.md.
"""

from __future__ import annotations

from .binary import binary_view, recall_constrained_threshold
from .classification import confusion_matrix, predicted_class
from .config import MetricsConfig, higher_is_better, load_config
from .paired import MethodOutput, compare, compare_all, delong_test, holm, mcnemar_test
from .segmentation import dice_iou
from .subgroups import age_band, group_key, ita_light_dark, subgroup_attributes
from .suite import evaluate, evaluate_means, evaluate_segmentation, metric_names
from .validation import validate_predictions

__all__ = [
    "MethodOutput",
    "MetricsConfig",
    "age_band",
    "binary_view",
    "compare",
    "compare_all",
    "confusion_matrix",
    "delong_test",
    "dice_iou",
    "evaluate",
    "evaluate_means",
    "evaluate_segmentation",
    "group_key",
    "higher_is_better",
    "holm",
    "ita_light_dark",
    "load_config",
    "mcnemar_test",
    "metric_names",
    "predicted_class",
    "recall_constrained_threshold",
    "subgroup_attributes",
    "validate_predictions",
]
