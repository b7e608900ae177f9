"""Subgroups: the attributes (skin tone, sex, age band, body site, source), each metric per
group, each group's gap to the rest, and the max - min gap, from one shared bootstrap so the
gaps' CIs account for both sides' uncertainty.

A group (or its rest) smaller than the minimum size, or holding a single class, gets NaN and a
reason instead of a number; values that say nothing ("unknown", empty, NaN) form no group.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import BenchboxError

MISSING_VALUES = frozenset({"", "unknown", "nan", "none", "na", "n/a"})
# Computes {metric: (rows x 2)} for segment 1 (the group) and segment 0 (the rest); -1 = left out.
SegmentMetrics = Callable[[np.ndarray, int, Sequence[str]], dict[str, np.ndarray]]


def group_key(value: object) -> str | None:
    """The group name used in metric names (no dots or spaces), or None for a missing value."""
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    text = str(value).strip()
    if text.lower() in MISSING_VALUES:
        return None
    return re.sub(r"[^A-Za-z0-9_+\-]+", "_", text).strip("_") or None


def age_band(ages: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Age bands from ages in years: edges (30, 45, 60, 75) give 0-29, 30-44, 45-59, 60-74, 75+; NaN -> "unknown"."""
    ages = np.asarray(ages, dtype=np.float64)
    lows = [0, *edges]
    labels = [f"{lo:g}-{hi - 1:g}" for lo, hi in zip(lows, edges)] + [f"{edges[-1]:g}+"]
    bands = np.full(len(ages), "unknown", dtype=object)
    known = np.isfinite(ages)
    bands[known] = np.array(labels, dtype=object)[np.searchsorted(edges, ages[known], side="right")]
    return bands


def ita_light_dark(ita: np.ndarray, cut: float) -> np.ndarray:
    """"light" where ITA > cut degrees, "dark" where ITA <= cut (the recall-ensemble paper's 28), NaN -> "unknown"."""
    ita = np.asarray(ita, dtype=np.float64)
    return np.where(np.isnan(ita), "unknown", np.where(ita > cut, "light", "dark")).astype(object)


def subgroup_attributes(
    manifest: pd.DataFrame, attributes: Sequence[str], age_band_edges: Sequence[float], ita_cut: float
) -> dict[str, np.ndarray]:
    """The attribute arrays `evaluate` takes, from manifest columns (age_band from age, ita_light_dark from ita)."""
    out: dict[str, np.ndarray] = {}
    for name in attributes:
        if name == "age_band":
            out[name] = age_band(manifest["age"].to_numpy(), age_band_edges)
        elif name == "ita_light_dark":
            out[name] = ita_light_dark(manifest["ita"].to_numpy(), ita_cut)
        elif name in manifest:
            out[name] = manifest[name].to_numpy(dtype=object)
        else:
            raise BenchboxError(
                f"subgroup attribute {name!r} (metrics/suites.yaml, subgroups.attributes) is not a manifest column; "
                f"use one of {sorted(manifest.columns)}, age_band or ita_light_dark."
            )
    return out


@dataclass
class SubgroupResult:
    """Replicates (rows,) per metric name, the image count behind each, and reasons for NaN."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


def subgroup_replicates(
    attribute: str,
    values: np.ndarray,
    metrics: Sequence[str],
    compute: SegmentMetrics,
    labels: dict[str, tuple[np.ndarray, Sequence[str]]],
    min_size: int,
    n_rows: int,
) -> SubgroupResult:
    """Per group, gap to the rest and max - min gap of each metric over the groups of one attribute.

    `labels` maps "binary" (for binary.* metrics) and "multiclass" to (labels, class names), used
    to find single-class groups. Names: subgroup.<attribute>.<metric>.<group>,
    subgroup.<attribute>.<metric>.gap.<group> (group minus rest) and subgroup.<attribute>.<metric>.gap.
    """
    keys = np.array([group_key(v) for v in values], dtype=object)
    known = np.array([k is not None for k in keys], dtype=bool)
    groups = sorted({k for k in keys[known]})
    result = SubgroupResult()
    valid_groups: dict[str, list[tuple[str, np.ndarray]]] = {m: [] for m in metrics}
    nan = np.full(n_rows, np.nan)
    for group in groups:
        member = keys == group
        rest = known & ~member
        problems = {}
        for metric in metrics:
            y, names = labels["binary" if metric.startswith("binary.") else "multiclass"]
            problems[metric] = (
                _problem(f"group {group!r}", y[member], names, min_size),
                _problem(f"the rest of group {group!r}", y[rest], names, min_size),
            )
        if all(group_problem for group_problem, _ in problems.values()):
            replicates = {}  # nothing to compute: every value and gap of this group is NaN
        else:
            replicates = compute(np.where(known, member.astype(np.int64), -1), 2, metrics)
        for metric in metrics:
            group_problem, rest_problem = problems[metric]
            prefix = f"subgroup.{attribute}.{metric}"
            name, gap = f"{prefix}.{group}", f"{prefix}.gap.{group}"
            result.n[name] = result.n[gap] = int(member.sum())
            if group_problem:
                result.values[name], result.reasons[name] = nan, group_problem
            else:
                result.values[name] = replicates[metric][:, 1]
                valid_groups[metric].append((group, replicates[metric][:, 1]))
            if group_problem or rest_problem:
                result.values[gap], result.reasons[gap] = nan, group_problem or rest_problem
            else:
                result.values[gap] = replicates[metric][:, 1] - replicates[metric][:, 0]
    for metric in metrics:
        name = f"subgroup.{attribute}.{metric}.gap"
        valid = valid_groups[metric]
        result.n[name] = int(sum((keys == g).sum() for g, _ in valid))
        if len(valid) < 2:
            result.values[name] = nan
            result.reasons[name] = f"fewer than two groups of {attribute!r} with >= {min_size} images and both classes"
            continue
        stacked = np.stack([v for _, v in valid], axis=1)
        result.values[name] = stacked.max(axis=1) - stacked.min(axis=1)
        undefined = [g for g, v in valid if not np.isfinite(v[0])]
        if undefined:
            result.reasons[name] = f"the metric is undefined in group(s) {undefined}"
    return result


def _problem(what: str, labels: np.ndarray, class_names: Sequence[str], min_size: int) -> str | None:
    """Why a set of images cannot carry a subgroup metric, or None if it can."""
    if len(labels) < min_size:
        return f"{what} has {len(labels)} images, fewer than the minimum {min_size}"
    present = np.unique(labels)
    if len(present) < 2:
        return f"{what} holds only class {class_names[int(present[0])]!r}"
    return None
