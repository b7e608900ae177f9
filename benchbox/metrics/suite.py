"""The entry points the runner calls: every metric of a method's predictions, with
lesion-clustered bootstrap CIs and subgroup gaps, as flat dotted names -> plain dicts.

    entry = {"value", "ci_low", "ci_high", "n", "higher_is_better", "ci_method", "reason"}

`ci_method` is "bca", "percentile" (BCa was degenerate, or the suite asks for percentile) or
None (no CI); `reason` says why the value or its CI is missing, else None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from ..errors import BenchboxError
from ..labels import BINARY_CLASSES, CLASSES
from . import binary, calibration, classification, segmentation
from .adjusted import adjusted_gap_replicates
from .bootstrap import Resamples, confidence_intervals, draw_resamples
from .config import MetricsConfig, load_config
from .seeds import pool_replicates
from .subgroups import add_worst_gaps, heterogeneity_entries, prediction_errors, subgroup_replicates
from .validation import validate_inputs


@dataclass(frozen=True)
class Predictions:
    """One method's predictions in the forms the metric families use."""

    task: str
    y_true: np.ndarray  # class indices into CLASSES (multiclass) or 0/1 (binary)
    proba: np.ndarray
    malignant: np.ndarray  # 0/1
    score: np.ndarray  # malignancy score
    threshold: float  # operating point: malignant when score >= threshold


def prepare(task: str, y_true: np.ndarray, proba: np.ndarray, threshold: float | None = None) -> Predictions:
    """Derive the binary view (7-class: summed mel+bcc+akiec probability) and the operating point."""
    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    malignant, score = binary.binary_view(task, y_true, proba)
    threshold = binary.DEFAULT_THRESHOLD if threshold is None else threshold
    return Predictions(task, y_true, proba, malignant, score, threshold)


# Metric families: names, how to compute them for all weight rows and segments, why they can be NaN.
_BINARY_FAMILIES = ("binary_threshold", "binary_rank", "binary_calibration")
_FAMILIES = {
    "multiclass": ("confusion", "ranking", "calibration", *_BINARY_FAMILIES),
    "binary": _BINARY_FAMILIES,
}
_FAMILY_NAMES = {
    "confusion": tuple(classification.confusion_names(CLASSES)),
    "ranking": tuple(classification.ranking_names(CLASSES)),
    "calibration": calibration.CALIBRATION_METRICS,
    "binary_threshold": binary.THRESHOLD_METRICS,
    "binary_rank": binary.RANK_METRICS,
    "binary_calibration": calibration.BINARY_CALIBRATION_METRICS,
}
UNDEFINED_REASONS = {
    **classification.undefined_reasons(CLASSES),
    **binary.UNDEFINED_REASONS,
    **calibration.UNDEFINED_REASONS,
}


def metric_names(task: str) -> list[str]:
    """Every scalar metric `evaluate` returns for a method of `task` (besides subgroup metrics)."""
    if task not in _FAMILIES:
        raise BenchboxError(f"unknown task {task!r}; expected one of {list(_FAMILIES)}")
    return [name for family in _FAMILIES[task] for name in _FAMILY_NAMES[family]]


def compute_replicates(
    predictions: Predictions,
    resamples: Resamples,
    names: Sequence[str] | None = None,
    segment: np.ndarray | None = None,
    n_segments: int = 1,
) -> dict[str, np.ndarray]:
    """{name: (rows x n_segments)} for the requested metrics (default: all of the task), every weight row."""
    wanted = set(metric_names(predictions.task) if names is None else names)
    unknown = wanted - set(metric_names(predictions.task))
    if unknown:
        raise BenchboxError(
            f"metric(s) {sorted(unknown)} are not computed for {predictions.task} methods; "
            f"known: {metric_names(predictions.task)}"
        )
    segment = np.zeros(len(predictions.y_true), dtype=np.int64) if segment is None else segment
    p, out = predictions, {}
    for family in _FAMILIES[p.task]:
        if not wanted & set(_FAMILY_NAMES[family]):
            continue
        if family == "confusion":
            y_pred = classification.predicted_class(p.proba)
            values = classification.confusion_replicates(resamples, p.y_true, y_pred, CLASSES, segment, n_segments)
        elif family == "ranking":
            statistics = tuple(
                s for s in classification.PER_CLASS_RANKING
                if wanted & {f"{s}_macro", f"{s}_weighted", *(f"{s}.{c}" for c in CLASSES)}
            )
            values = classification.ranking_replicates(
                resamples, p.y_true, p.proba, CLASSES, segment, n_segments, statistics
            )
        elif family == "calibration":
            values = calibration.calibration_replicates(resamples, p.y_true, p.proba, segment, n_segments)
        elif family == "binary_threshold":
            values = binary.threshold_replicates(resamples, p.malignant, p.score, p.threshold, segment, n_segments)
        elif family == "binary_rank":
            names_wanted = tuple(n for n in binary.RANK_METRICS if n in wanted)
            values = binary.rank_replicates(resamples, p.malignant, p.score, segment, n_segments, names_wanted)
        else:
            values = calibration.binary_calibration_replicates(resamples, p.malignant, p.score, segment, n_segments)
        out.update({name: value for name, value in values.items() if name in wanted})
    return out


@dataclass
class ReplicateTable:
    """Every metric's replicate rows (point, bootstrap, jackknife) and what summarise needs besides."""

    replicates: dict[str, np.ndarray]
    n: dict[str, int]
    reasons: dict[str, str]
    n_bootstrap: int
    groups: dict[str, str]  # the group each worst-gap metric belongs to
    errors: dict[str, np.ndarray]  # per-image errors ("binary", "multiclass") for the heterogeneity test


def evaluate(
    task: str,
    y_true: np.ndarray,
    proba: np.ndarray,
    clusters: np.ndarray,
    attributes: Mapping[str, np.ndarray] | None = None,
    threshold: float | None = None,
    config: MetricsConfig | None = None,
    *,
    metrics: Sequence[str] | None = None,
    method: str = "predictions",
    strata: np.ndarray | None = None,
) -> dict[str, dict]:
    """All metrics of one method, with lesion-clustered bootstrap CIs, and its subgroup metrics.

    task: "multiclass" (proba N x 7, y_true indices into CLASSES) or "binary" (proba N x 2,
    column 1 = malignant, y_true 0/1). clusters: lesion ids. attributes: subgroup name -> one
    value per image. threshold: the binary operating point (default 0.5). metrics: compute only
    these (default: all of `metric_names(task)`). method: names the method in error messages.
    strata: per-image image source; with it every subgroup gap also gets its source-adjusted
    gap (adjusted.py).
    """
    config = config or load_config()
    table = evaluate_replicates(task, y_true, proba, clusters, attributes, threshold, config,
                                metrics=metrics, method=method, strata=strata)
    out = summarise(table.replicates, table.n, table.reasons, table.n_bootstrap, config, table.groups)
    out.update(_heterogeneity(attributes, table.errors, clusters, config))
    return out


def evaluate_seeds(
    task: str,
    y_true: np.ndarray,
    probas: Sequence[np.ndarray],
    clusters: np.ndarray,
    attributes: Mapping[str, np.ndarray] | None = None,
    thresholds: Sequence[float | None] | None = None,
    config: MetricsConfig | None = None,
    *,
    metrics: Sequence[str] | None = None,
    method: str = "predictions",
    strata: np.ndarray | None = None,
) -> dict[str, dict]:
    """`evaluate` for one method trained with several seeds (one probability matrix and operating
    point per seed, on the same test images): values are means over seeds and intervals include
    the seeds' spread (see seeds.py). Each entry also lists `per_seed` values and `n_seeds`."""
    config = config or load_config()
    thresholds = list(thresholds) if thresholds is not None else [None] * len(probas)
    tables = [evaluate_replicates(task, y_true, proba, clusters, attributes, threshold, config,
                                  metrics=metrics, method=method, worst_gaps=False, strata=strata)
              for proba, threshold in zip(probas, thresholds)]
    # the worst group is picked on the seed mean, then each seed contributes that group's gap rows
    gaps = {name: np.mean([t.replicates[name] for t in tables], axis=0)
            for name in tables[0].replicates if ".gap." in name}
    n, reasons, groups = dict(tables[0].n), dict(tables[0].reasons), {}
    add_worst_gaps(gaps, n, reasons, groups, config.higher_is_better)
    for table in tables:
        for name, group in groups.items():
            table.replicates[name] = table.replicates[name.removesuffix("worst_gap") + f"gap.{group}"]
        table.n.update(n)
        for name in set(reasons) - set(table.reasons):
            table.reasons[name] = reasons[name]
    settings = config.bootstrap
    pooled = pool_replicates([t.replicates for t in tables], tables[0].n_bootstrap, settings.alpha, settings.method)
    out = {}
    for name, entry in pooled.items():
        reason = entry["reason"]
        if not np.isfinite(entry["value"]):
            reason = next((t.reasons[name] for t in tables if name in t.reasons), None) or _undefined_reason(name)
        elif ".adjusted_gap." in name:  # which sources were pooled (seed 0's; the rule is the same for every seed)
            reason = tables[0].reasons.get(name) or reason
        out[name] = {
            "value": entry["value"], "ci_low": entry["ci_low"], "ci_high": entry["ci_high"],
            "n": int(tables[0].n[name]), "higher_is_better": config.higher_is_better(name),
            "ci_method": entry["ci_method"], "reason": reason,
            "per_seed": entry["per_seed"], "n_seeds": len(probas), "dof": entry["dof"],
        }
        if name in groups:
            out[name]["group"] = groups[name]
    mean_errors = {task_name: np.mean([t.errors[task_name] for t in tables], axis=0) for task_name in tables[0].errors}
    for name, entry in _heterogeneity(attributes, mean_errors, clusters, config).items():
        out[name] = {**entry, "n_seeds": len(probas)}
    return out


def _heterogeneity(attributes, errors, clusters, config: MetricsConfig) -> dict[str, dict]:
    return heterogeneity_entries(attributes or {}, errors, clusters, config.heterogeneity_permutations,
                                 config.heterogeneity_seed, config.min_subgroup_size)


def evaluate_replicates(
    task: str,
    y_true: np.ndarray,
    proba: np.ndarray,
    clusters: np.ndarray,
    attributes: Mapping[str, np.ndarray] | None = None,
    threshold: float | None = None,
    config: MetricsConfig | None = None,
    *,
    metrics: Sequence[str] | None = None,
    method: str = "predictions",
    worst_gaps: bool = True,
    strata: np.ndarray | None = None,
) -> ReplicateTable:
    """The replicate rows behind `evaluate` (the same lesion resamples for the same clusters and
    bootstrap seed, so several seeds' tables line up row by row); `strata` adds the source-adjusted
    gaps (a finite one's reason says which sources were pooled)."""
    config = config or load_config()
    validate_inputs(method, task, y_true, proba, clusters, attributes)
    predictions = prepare(task, y_true, proba, threshold)
    settings = config.bootstrap
    resamples = draw_resamples(clusters, settings.n_resamples, settings.seed)
    replicates = {name: value[:, 0] for name, value in compute_replicates(predictions, resamples, metrics).items()}
    n = {name: len(predictions.y_true) for name in replicates}
    reasons: dict[str, str] = {}
    groups: dict[str, str] = {}
    subgroup_names = config.subgroup_metrics(task)
    unknown = sorted(set(subgroup_names) - set(metric_names(task)))
    if unknown:
        raise BenchboxError(f"{config.source}: subgroup metric(s) {unknown} are not computed for {task} methods.")
    labels = {"binary": (predictions.malignant, BINARY_CLASSES)}
    if task == "multiclass":
        labels["multiclass"] = (predictions.y_true, CLASSES)

    def segment_metrics(segment: np.ndarray, n_segments: int, names: Sequence[str]) -> dict[str, np.ndarray]:
        return compute_replicates(predictions, resamples, names, segment, n_segments)

    for attribute, values in (attributes or {}).items():
        result = subgroup_replicates(
            attribute, np.asarray(values, dtype=object), subgroup_names, segment_metrics, labels,
            config.min_subgroup_size, resamples.n_rows, config.higher_is_better, worst_gaps,
        )
        replicates.update(result.values)
        n.update(result.n)
        reasons.update(result.reasons)
        groups.update(result.groups)
        if strata is not None and attribute != config.adjust_for:
            adjusted = adjusted_gap_replicates(
                attribute, np.asarray(values, dtype=object), np.asarray(strata, dtype=object), subgroup_names,
                segment_metrics, partial(segment_confusions, predictions, resamples), labels,
                class_mix(predictions), config.min_stratum_size, resamples.n_rows,
            )
            replicates.update(adjusted.values)
            n.update(adjusted.n)
            reasons.update({**adjusted.notes, **adjusted.reasons})
    return ReplicateTable(replicates, n, reasons, resamples.n_bootstrap, groups, prediction_errors(predictions))


def segment_confusions(predictions: Predictions, resamples: Resamples, segment: np.ndarray, n_segments: int,
                       task: str) -> np.ndarray:
    """Bootstrap-weighted confusion matrices (rows x segments x K x K) for adjusted.py: the 7-class
    arg-max, or the binary operating point (0 = benign, 1 = malignant)."""
    if task == "multiclass":
        k, codes = len(CLASSES), predictions.y_true * len(CLASSES) + classification.predicted_class(predictions.proba)
    else:
        k, codes = 2, predictions.malignant * 2 + (predictions.score >= predictions.threshold).astype(np.int64)
    sums = resamples.segment_sums(segment, n_segments, codes, k * k)
    return sums.reshape(*sums.shape[:2], k, k)


def class_mix(predictions: Predictions) -> dict[str, np.ndarray]:
    """The test set's class shares, to which adjusted gaps standardise prevalence-dependent metrics."""
    mix = {"binary": np.bincount(predictions.malignant, minlength=2) / len(predictions.malignant)}
    if predictions.task == "multiclass":
        mix["multiclass"] = np.bincount(predictions.y_true, minlength=len(CLASSES)) / len(predictions.y_true)
    return mix


def evaluate_segmentation(
    predicted_masks: np.ndarray, true_masks: np.ndarray, clusters: np.ndarray, config: MetricsConfig | None = None
) -> dict[str, dict]:
    """Mean Dice and IoU (`segmentation.dice`, `segmentation.iou`) of predicted lesion masks, with clustered CIs."""
    dice, iou = segmentation.dice_iou(predicted_masks, true_masks)
    return evaluate_means(dict(zip(segmentation.SEGMENTATION_METRICS, (dice, iou))), clusters, config)


def evaluate_means(
    per_image: Mapping[str, np.ndarray], clusters: np.ndarray, config: MetricsConfig | None = None
) -> dict[str, dict]:
    """The mean of each per-image score over the images where it is defined (NaN = undefined,
    e.g. a pointing game on an empty mask), with a lesion-clustered CI. For explanation and
    segmentation scores; each name needs a direction in metrics/suites.yaml."""
    config = config or load_config()
    clusters = np.asarray(clusters)
    for name, values in per_image.items():
        if len(values) != len(clusters):
            raise BenchboxError(f"{name}: {len(values)} per-image values but {len(clusters)} lesion ids.")
    resamples = draw_resamples(clusters, config.bootstrap.n_resamples, config.bootstrap.seed)
    replicates, n, reasons = {}, {}, {}
    for name, values in per_image.items():
        values = np.asarray(values, dtype=np.float64)
        defined = np.isfinite(values)
        segment = np.where(defined, 0, -1)
        codes = np.zeros(len(values), dtype=np.int64)
        total = resamples.segment_sums(segment, 1, codes, 1, np.where(defined, values, 0.0))[:, 0, 0]
        count = resamples.segment_sums(segment, 1, codes, 1)[:, 0, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            replicates[name] = np.where(count > 0, total / count, np.nan)
        n[name] = int(defined.sum())
        if not n[name]:
            reasons[name] = "the score is undefined (NaN) for every image"
    return summarise(replicates, n, reasons, resamples.n_bootstrap, config)


def summarise(
    replicates: Mapping[str, np.ndarray],
    n: Mapping[str, int],
    reasons: Mapping[str, str],
    n_bootstrap: int,
    config: MetricsConfig,
    groups: Mapping[str, str] | None = None,
) -> dict[str, dict]:
    """Point estimates, CIs and directions for every metric, from its (rows,) replicates; a
    worst-gap metric also names its group."""
    names = list(replicates)
    if not names:
        return {}
    stacked = np.stack([replicates[name] for name in names])
    intervals = confidence_intervals(stacked, n_bootstrap, config.bootstrap.alpha, config.bootstrap.method)
    out = {}
    for i, name in enumerate(names):
        value = float(stacked[i, 0])
        if np.isnan(value):
            reason = reasons.get(name) or _undefined_reason(name)
        else:
            reason = reasons.get(name) or intervals.reason[i]
        out[name] = {
            "value": value,
            "ci_low": float(intervals.low[i]),
            "ci_high": float(intervals.high[i]),
            "n": int(n[name]),
            "higher_is_better": config.higher_is_better(name),
            "ci_method": intervals.method[i],
            "reason": reason,
        }
        if groups and name in groups:
            out[name]["group"] = groups[name]
    return out


def _undefined_reason(name: str) -> str:
    """The family's reason for a NaN value; a subgroup name takes its metric's reason."""
    if name.startswith("subgroup."):
        metric = ".".join(name.split(".")[2:-1]).removesuffix(".gap")
        return UNDEFINED_REASONS.get(metric, "undefined") + " (in this group or its rest)"
    return UNDEFINED_REASONS.get(name, "undefined")
