"""Multi-class metrics: accuracy, balanced accuracy, MCC, F1 (macro, weighted, per class),
per-class precision/recall/support, one-vs-rest AUC and average precision, confusion matrix.

Every metric is computed for all bootstrap weight rows at once (see `bootstrap.py`): the
threshold metrics from one weighted confusion matrix per row, the rank metrics from
`ranking.py`. A value that is mathematically undefined is NaN, never a convenient 0 or 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .bootstrap import Resamples
from .ranking import rank_statistics

CONFUSION_METRICS = ("accuracy", "balanced_accuracy", "mcc", "f1_macro", "f1_weighted")
PER_CLASS_CONFUSION = ("precision", "recall", "f1", "support")
RANKING_METRICS = ("auc_macro", "auc_weighted", "ap_macro")
PER_CLASS_RANKING = ("auc", "ap")


def predicted_class(proba: np.ndarray) -> np.ndarray:
    """The arg-max class of each row (the lowest index on ties, as numpy)."""
    return np.argmax(proba, axis=1)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (n_classes x n_classes), rows = true class, columns = predicted class."""
    flat = np.asarray(y_true) * n_classes + np.asarray(y_pred)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def confusion_names(class_names: Sequence[str]) -> list[str]:
    return [*CONFUSION_METRICS, *(f"{m}.{c}" for m in PER_CLASS_CONFUSION for c in class_names)]


def ranking_names(class_names: Sequence[str]) -> list[str]:
    return [*RANKING_METRICS, *(f"{m}.{c}" for m in PER_CLASS_RANKING for c in class_names)]


def undefined_reasons(class_names: Sequence[str]) -> dict[str, str]:
    """Why each metric can be NaN: the one condition under which it is undefined."""
    reasons = {
        "accuracy": "no images",
        "balanced_accuracy": "no images",
        "mcc": "the true labels hold a single class",
        "f1_macro": "no images",
        "f1_weighted": "no images",
        "auc_macro": "no class has both positive and negative images",
        "auc_weighted": "no class has both positive and negative images",
        "ap_macro": "no class has both positive and negative images",
    }
    for c in class_names:
        reasons[f"precision.{c}"] = f"no image was predicted as {c}"
        reasons[f"recall.{c}"] = f"no image of class {c}"
        reasons[f"f1.{c}"] = f"class {c} is neither present nor predicted"
        reasons[f"support.{c}"] = "no images"
        reasons[f"auc.{c}"] = f"needs images of {c} and of other classes"
        reasons[f"ap.{c}"] = f"needs images of {c} and of other classes"
    return reasons


def confusion_replicates(
    resamples: Resamples,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    segment: np.ndarray,
    n_segments: int,
) -> dict[str, np.ndarray]:
    """{name: (rows x n_segments)} for the confusion-matrix metrics of `confusion_names`."""
    k = len(class_names)
    sums = resamples.segment_sums(segment, n_segments, y_true * k + y_pred, k * k)
    return confusion_metrics(sums.reshape(*sums.shape[:2], k, k), class_names)


def confusion_metrics(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Metrics of (possibly weighted) confusion matrices of shape (..., K, K), rows = true class.

    precision/recall/F1 of a class are NaN when their denominator is 0 (F1 = 2TP/(2TP+FP+FN), so
    a class that is present but never predicted has F1 0); macro and weighted averages and
    balanced accuracy use the classes where the value is defined. MCC is Gorodkin's K-class
    form; it is NaN when the truth holds one class and 0 when every prediction is one class.
    """
    true_count = cm.sum(axis=-1)
    predicted_count = cm.sum(axis=-2)
    hits = np.diagonal(cm, axis1=-2, axis2=-1)
    total = true_count.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted_count > 0, hits / predicted_count, np.nan)
        recall = np.where(true_count > 0, hits / true_count, np.nan)
        f1_denominator = true_count + predicted_count
        f1 = np.where(f1_denominator > 0, 2 * hits / f1_denominator, np.nan)
        correct = hits.sum(axis=-1)
        covariance = correct * total - (predicted_count * true_count).sum(axis=-1)
        true_spread = total**2 - (true_count**2).sum(axis=-1)
        predicted_spread = total**2 - (predicted_count**2).sum(axis=-1)
        mcc = np.where(
            true_spread <= 0,
            np.nan,
            np.where(predicted_spread <= 0, 0.0, covariance / np.sqrt(true_spread * predicted_spread)),
        )
        out = {
            "accuracy": np.where(total > 0, correct / total, np.nan),
            "balanced_accuracy": nan_mean(recall),
            "mcc": mcc,
            "f1_macro": nan_mean(f1),
            "f1_weighted": nan_mean(f1, weights=true_count),
        }
    for i, c in enumerate(class_names):
        out[f"precision.{c}"] = precision[..., i]
        out[f"recall.{c}"] = recall[..., i]
        out[f"f1.{c}"] = f1[..., i]
        out[f"support.{c}"] = np.where(total > 0, true_count[..., i], np.nan)
    return out


def ranking_replicates(
    resamples: Resamples,
    y_true: np.ndarray,
    proba: np.ndarray,
    class_names: Sequence[str],
    segment: np.ndarray,
    n_segments: int,
    statistics: tuple[str, ...] = PER_CLASS_RANKING,
) -> dict[str, np.ndarray]:
    """{name: (rows x n_segments)} for one-vs-rest AUC and/or average precision (`ranking_names`).

    Macro averages use the classes with both positive and negative images in that resample;
    the weighted AUC weights each class by its (resampled) prevalence, as scikit-learn's "ovr".
    """
    k = len(class_names)
    out: dict[str, np.ndarray] = {}
    for i, c in enumerate(class_names):
        stats = rank_statistics(resamples, proba[:, i], y_true == i, statistics, segment, n_segments)
        out.update({f"{name}.{c}": value for name, value in stats.items()})
    if "auc" in statistics:
        auc = np.stack([out[f"auc.{c}"] for c in class_names], axis=-1)
        out["auc_macro"] = nan_mean(auc)
        out["auc_weighted"] = nan_mean(auc, weights=resamples.segment_sums(segment, n_segments, y_true, k))
    if "ap" in statistics:
        out["ap_macro"] = nan_mean(np.stack([out[f"ap.{c}"] for c in class_names], axis=-1))
    return out


def nan_mean(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean over the last axis ignoring NaN entries (NaN when none is left), without warnings."""
    defined = np.isfinite(values)
    weights = np.ones_like(values) if weights is None else weights
    weights = np.where(defined, weights, 0.0)
    total_weight = weights.sum(axis=-1)
    weighted_sum = (np.where(defined, values, 0.0) * weights).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total_weight > 0, weighted_sum / total_weight, np.nan)
