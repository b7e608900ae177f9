"""Source-adjusted subgroup gaps: each group's gap to the rest within each image source, pooled.

A raw gap (group minus rest) mixes two things: how the model does on the group, and which
sources the group's images come from. If dark-skinned images come mostly from a source where
the model is worse for everyone, dark skin shows a gap that no within-source comparison has.
The adjusted gap compares the group with its rest inside each source and pools those
differences with fixed Cochran-Mantel-Haenszel-style weights n_g n_r / (n_g + n_r), so a gap
that comes only from the sources disappears and one that is there within the sources stays.

Metrics that depend on the class mix (accuracy, MCC, F1, precision) also differ between cells
that hold different shares of each class; those metrics are computed from each cell's confusion
matrix rescaled to one reference class mix (the caller passes the test set's). Recall, balanced
accuracy, sensitivity and specificity are within-class rates and do not change. Every cell's
value comes from the same lesion resamples, so the pooled gap's replicate rows give its CI.

The attribute "source" is not adjusted for source: the caller skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import BenchboxError
from ..labels import BINARY_CLASSES, CLASSES
from .classification import CONFUSION_METRICS, confusion_metrics
from .subgroups import SegmentMetrics, _problem, group_keys

# Weighted confusion matrices (rows x n_segments x K x K, rows = true class) of each segment for
# task "multiclass" (K = 7, CLASSES order) or "binary" (0 = benign, 1 = malignant); -1 = left out.
SegmentConfusions = Callable[[np.ndarray, int, str], np.ndarray]

# Metrics computed from a rescaled confusion matrix: name -> (task, name in confusion_metrics).
STANDARDISED = {
    **{name: ("multiclass", name) for name in CONFUSION_METRICS},
    **{f"{m}.{c}": ("multiclass", f"{m}.{c}") for m in ("precision", "recall", "f1") for c in CLASSES},
    "binary.accuracy": ("binary", "accuracy"),
    "binary.sensitivity": ("binary", "recall.malignant"),
    "binary.specificity": ("binary", "recall.benign"),
    "binary.precision": ("binary", "precision.malignant"),
    "binary.f1": ("binary", "f1.malignant"),
}
_CLASS_NAMES = {"multiclass": CLASSES, "binary": BINARY_CLASSES}
# Standardised metrics that standardising does not change (rates within one true class).
WITHIN_CLASS_RATES = ("balanced_accuracy", "recall.", "binary.sensitivity", "binary.specificity")


@dataclass
class AdjustedResult:
    """Replicates (rows,) per subgroup.<attribute>.<metric>.adjusted_gap.<group>, the images of
    the pooled sources behind each, why a value is NaN (`reasons`), how a finite value was
    pooled (`notes`) and the pooled sources' names (`strata`)."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    strata: dict[str, list[str]] = field(default_factory=dict)


def adjusted_gap_replicates(
    attribute: str,
    values: np.ndarray,
    strata: np.ndarray,
    metrics: Sequence[str],
    segment_metrics: SegmentMetrics,
    confusions: SegmentConfusions,
    labels: dict[str, tuple[np.ndarray, Sequence[str]]],
    class_mix: Mapping[str, np.ndarray],
    min_size: int,
    n_rows: int,
) -> AdjustedResult:
    """The source-adjusted gap of every group of one attribute, for every metric.

    values: per-image groups; strata: per-image source (images missing either are left out).
    metrics, labels, n_rows: as in `subgroups.subgroup_replicates` (binary.* metrics use
    labels["binary"]). segment_metrics: the shared-bootstrap callback of subgroups.py;
    confusions: the same resamples' confusion matrices per segment (`SegmentConfusions`);
    class_mix: {"multiclass": (7,), "binary": (2,)} class shares the `STANDARDISED` metrics are
    standardised to in every cell (renormalised over the classes present in the cell).

    Within source s, d_s = m(group in s) - m(rest in s) per replicate row. A source is pooled when
    both its cells pass the subgroup checks with `min_size` (a per-source minimum) and d_s is
    defined at the point estimate; the gap is sum_s w_s d_s / sum_s w_s with w_s = n_gs n_rs /
    (n_gs + n_rs) from the image counts. A row where d_s is NaN leaves that source out of the
    row's sum; a row where every pooled d_s is NaN is NaN.
    """
    keys = group_keys(values)
    stratum_keys = group_keys(strata)
    if len(keys) != len(stratum_keys):
        raise BenchboxError(
            f"adjusted gaps of {attribute!r}: {len(keys)} group values but {len(stratum_keys)} source values; "
            "give one of each per image."
        )
    mixes = _check_class_mix(class_mix, {STANDARDISED[m][0] for m in metrics if m in STANDARDISED})
    has_group = np.array([k is not None for k in keys], dtype=bool)
    known = has_group & np.array([k is not None for k in stratum_keys], dtype=bool)
    sources = sorted({k for k in stratum_keys[known]})
    stratum_index = np.searchsorted(sources, stratum_keys[known].astype(str))
    result = AdjustedResult()
    nan = np.full(n_rows, np.nan)
    for group in sorted({k for k in keys[has_group]}):
        member = known & (keys == group)
        segment = np.full(len(keys), -1, dtype=np.int64)
        segment[known] = 2 * stratum_index + member[known]
        names = {metric: f"subgroup.{attribute}.{metric}.adjusted_gap.{group}" for metric in metrics}
        if not member.any():
            for name in names.values():
                result.values[name], result.n[name] = nan, 0
                result.reasons[name] = f"no image of group {group!r} has a known source"
            continue
        cell_sizes = np.bincount(segment[known], minlength=2 * len(sources)).reshape(-1, 2)  # (rest, group)
        by_labels = {task: _cell_problems(group, segment, sources, labels[task], min_size)
                     for task in {_task(metric) for metric in metrics}}
        problems = {metric: by_labels[_task(metric)] for metric in metrics}
        usable = [m for m in metrics if None in problems[m].values()]
        differences = _differences(usable, segment, 2 * len(sources), segment_metrics, confusions, mixes)
        for metric in metrics:
            name = names[metric]
            result.values[name], result.n[name], result.strata[name] = nan, 0, []
            if metric not in differences:
                result.reasons[name] = _none_qualifies(group, sources, cell_sizes, problems[metric], min_size)
                continue
            d = differences[metric]
            left_out = dict(problems[metric])
            undefined = [s for s in range(len(sources)) if left_out[s] is None and not np.isfinite(d[0, s])]
            for s in undefined:
                left_out[s] = f"{metric} is undefined in group {group!r} or its rest there"
            pooled = [s for s in range(len(sources)) if left_out[s] is None]
            if not pooled:
                result.reasons[name] = (
                    f"{metric} is undefined in group {group!r} or its rest within every source with enough images "
                    f"({', '.join(sources[s] for s in undefined)})"
                )
                continue
            rest_n, group_n = cell_sizes[pooled, 0].astype(np.float64), cell_sizes[pooled, 1].astype(np.float64)
            result.values[name] = _pool(d[:, pooled], group_n * rest_n / (group_n + rest_n))
            result.n[name] = int(cell_sizes[pooled].sum())
            result.strata[name] = [sources[s] for s in pooled]
            result.notes[name] = _note(attribute, metric, sources, pooled, left_out)
    return result


def standardise(cm: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """Confusion matrices (..., K, K), rows = true class, with each true-class row rescaled so the
    class shares equal `mix` renormalised over the classes present (empty rows stay zero)."""
    true_count = cm.sum(axis=-1)
    present_mix = np.where(true_count > 0, mix, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = present_mix / present_mix.sum(axis=-1, keepdims=True)
        scale = np.where(true_count > 0, shares / true_count, 0.0)
    return cm * np.nan_to_num(scale)[..., None]


def _task(metric: str) -> str:
    return "binary" if metric.startswith("binary.") else "multiclass"


def _check_class_mix(class_mix: Mapping[str, np.ndarray], tasks: set[str]) -> dict[str, np.ndarray]:
    """The class mixes the standardised metrics need, as float arrays, or a BenchboxError."""
    mixes = {}
    for task in sorted(tasks):
        expected = len(_CLASS_NAMES[task])
        if task not in class_mix:
            raise BenchboxError(f"adjusted gaps: class_mix has no {task!r} entry; give its {expected} class shares.")
        mix = np.asarray(class_mix[task], dtype=np.float64)
        if mix.shape != (expected,) or not np.all(np.isfinite(mix)) or np.any(mix < 0) or mix.sum() <= 0:
            raise BenchboxError(
                f"adjusted gaps: class_mix[{task!r}] must be {expected} non-negative shares "
                f"({', '.join(_CLASS_NAMES[task])}) with a positive sum, not {mix.tolist()}."
            )
        mixes[task] = mix
    return mixes


def _cell_problems(
    group: str, segment: np.ndarray, sources: list[str], labels: tuple[np.ndarray, Sequence[str]], min_size: int
) -> dict[int, str | None]:
    """Per source index: why its cells (group, rest) cannot carry the metric, or None."""
    y, class_names = labels
    out = {}
    for s in range(len(sources)):
        out[s] = (
            _problem(f"group {group!r}", y[segment == 2 * s + 1], class_names, min_size)
            or _problem(f"the rest of group {group!r}", y[segment == 2 * s], class_names, min_size)
        )
    return out


def _differences(
    metrics: Sequence[str],
    segment: np.ndarray,
    n_segments: int,
    segment_metrics: SegmentMetrics,
    confusions: SegmentConfusions,
    mixes: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """{metric: (rows x sources)} group minus rest within each source."""
    cells: dict[str, np.ndarray] = {}
    plain = [m for m in metrics if m not in STANDARDISED]
    if plain:
        cells.update(segment_metrics(segment, n_segments, plain))
    by_task: dict[str, list[str]] = {}
    for metric in metrics:
        if metric in STANDARDISED:
            by_task.setdefault(STANDARDISED[metric][0], []).append(metric)
    for task, names in by_task.items():
        values = confusion_metrics(standardise(confusions(segment, n_segments, task), mixes[task]), _CLASS_NAMES[task])
        cells.update({metric: values[STANDARDISED[metric][1]] for metric in names})
    return {m: cells[m][:, 1::2] - cells[m][:, 0::2] for m in metrics}


def _pool(differences: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_s w_s d_s / sum_s w_s per row over the sources where d_s is defined (NaN if none is)."""
    defined = np.isfinite(differences)
    total_weight = np.where(defined, weights, 0.0).sum(axis=1)
    weighted = np.where(defined, differences * weights, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total_weight > 0, weighted / total_weight, np.nan)


def _none_qualifies(
    group: str, sources: list[str], cell_sizes: np.ndarray, problems: dict[int, str | None], min_size: int
) -> str:
    """Why no source can carry the gap: each source's cell sizes (group and rest), or its class problem."""
    details = "; ".join(
        f"{source}: {cell_sizes[s, 1]} and {cell_sizes[s, 0]}" if min(cell_sizes[s]) < min_size
        else f"{source}: {problems[s]}"
        for s, source in enumerate(sources)
    )
    return f"no source has >= {min_size} images of both group {group!r} and its rest, each with two classes ({details})"


def _note(attribute: str, metric: str, sources: list[str], pooled: list[int], left_out: dict[int, str | None]) -> str:
    """How a finite gap was pooled: over which sources, which were left out and why, and any standardisation."""
    if len(sources) == 1:
        note = f"the gap within {sources[0]}, the only source among the images with a known {attribute}"
    else:
        note = f"pooled over {len(pooled)} of {len(sources)} sources"
        note += "".join(f"; {sources[s]} left out: {why}" for s, why in left_out.items() if why is not None)
    if metric in STANDARDISED and not metric.startswith(WITHIN_CLASS_RATES):
        note += f"; {metric} standardised to the test set's class mix"
    return note
