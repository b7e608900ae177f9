"""Subgroups: the attributes (skin tone, sex, age band, body site, source), each metric per
group, each group's gap to the rest and the worst group's gap, from one shared bootstrap so the
gaps' CIs account for both sides' uncertainty; and a lesion-level permutation test per attribute
of "group and error are unrelated" (heterogeneity).

A group (or its rest) smaller than the minimum size, or holding a single class, gets NaN and a
reason instead of a number; values that say nothing ("unknown", empty, NaN) form no group.

There is no max - min gap: the largest of several noisy group values is biased upward under the
bootstrap, and its BCa/percentile intervals could exclude their own estimate. The worst group is
instead chosen once, on the point estimate, and its gap keeps that fixed group's replicates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import BenchboxError
from .config import load_config

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


def group_keys(values) -> np.ndarray:
    """`group_key` of every value (an object array; None where the value is missing)."""
    return np.array([group_key(v) for v in np.asarray(values, dtype=object)], dtype=object)


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


def adjustment_strata(manifest: pd.DataFrame, config) -> np.ndarray | None:
    """The per-image values subgroup gaps are stratified by (`subgroups.adjust_for`, the image
    source), or None when adjustment is off or the column is absent."""
    if config.adjust_for is None or config.adjust_for not in manifest:
        return None
    return manifest[config.adjust_for].to_numpy(dtype=object)


@dataclass
class SubgroupResult:
    """Replicates (rows,) per metric name, the image count behind each, reasons for NaN, and for
    each `...worst_gap` name the group it is the gap of (metrics.json entry key "group")."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)


def subgroup_replicates(
    attribute: str,
    values: np.ndarray,
    metrics: Sequence[str],
    compute: SegmentMetrics,
    labels: dict[str, tuple[np.ndarray, Sequence[str]]],
    min_size: int,
    n_rows: int,
    higher_is_better: Callable[[str], bool | None] | None = None,
    worst_gaps: bool = True,
) -> SubgroupResult:
    """Per group and gap to the rest of each metric over the groups of one attribute, and (unless
    `worst_gaps` is False) the worst group's gap, via `add_worst_gaps` with `higher_is_better`
    (default: the directions of the default metrics/suites.yaml).

    `labels` maps "binary" (for binary.* metrics) and "multiclass" to (labels, class names), used
    to find single-class groups. Names: subgroup.<attribute>.<metric>.<group>,
    subgroup.<attribute>.<metric>.gap.<group> (group minus rest) and
    subgroup.<attribute>.<metric>.worst_gap (`result.groups` names its group). A caller that
    averages replicates over training seeds passes worst_gaps=False and calls `add_worst_gaps` on
    the averaged replicates, so that the worst group is picked on the averaged point estimate.
    """
    keys = group_keys(values)
    known = np.array([k is not None for k in keys], dtype=bool)
    groups = sorted({k for k in keys[known]})
    result = SubgroupResult()
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
            if group_problem or rest_problem:
                result.values[gap], result.reasons[gap] = nan, group_problem or rest_problem
            else:
                result.values[gap] = replicates[metric][:, 1] - replicates[metric][:, 0]
    if worst_gaps:
        if higher_is_better is None:
            higher_is_better = load_config().higher_is_better
        add_worst_gaps(result.values, result.n, result.reasons, result.groups, higher_is_better)
        for metric in metrics:  # an attribute without any group still names its worst gap
            name = f"subgroup.{attribute}.{metric}.worst_gap"
            if name not in result.values:
                result.values[name], result.n[name] = nan, 0
                result.reasons[name] = f"no group of {attribute!r} (every value is missing)"
    return result


def add_worst_gaps(
    replicates: dict[str, np.ndarray],
    n: dict[str, int],
    reasons: dict[str, str],
    groups: dict[str, str],
    higher_is_better: Callable[[str], bool | None],
) -> None:
    """Add subgroup.<attribute>.<metric>.worst_gap for every subgroup.<attribute>.<metric>.gap.<group>
    family in `replicates` ((rows,) arrays, row 0 = the point estimate), in place.

    The worst group is the one whose gap to the rest is lowest (`higher_is_better(metric)` True)
    or highest (False) at row 0, among groups whose gap is defined there (ties: the first group
    in name order); worst_gap's rows are that fixed group's gap rows, so its CI is that gap's CI.
    `groups[<...>.worst_gap]` gets the group's name, `n` its image count. A metric without a
    direction, or without any defined gap, gets NaN rows and a reason. Existing worst_gap entries
    are replaced, so the function can be called again on replicates averaged over seeds.
    """
    families: dict[str, list[str]] = {}
    for name in replicates:
        if name.startswith("subgroup.") and ".gap." in name:
            prefix, group = name.rsplit(".gap.", 1)
            if "." not in group and prefix.count(".") >= 2:
                families.setdefault(prefix, []).append(group)
    for prefix, members in families.items():
        target = f"{prefix}.worst_gap"
        metric = prefix.split(".", 2)[2]
        gap_names = [f"{prefix}.gap.{g}" for g in sorted(members)]
        rows = len(replicates[gap_names[0]])
        groups.pop(target, None)
        reasons.pop(target, None)
        direction = higher_is_better(metric)
        defined = [g for g in gap_names if np.isfinite(replicates[g][0])]
        if direction is None or not defined:
            replicates[target] = np.full(rows, np.nan)
            n[target] = 0
            reasons[target] = (
                f"{metric} has no better direction, so no group is worst" if direction is None
                else "no group's gap to the rest is defined (groups or rests too small or single-class)"
            )
            continue
        points = np.array([replicates[g][0] for g in defined])
        worst = defined[int(np.argmin(points) if direction else np.argmax(points))]
        replicates[target] = np.array(replicates[worst], dtype=np.float64, copy=True)
        n[target] = int(n.get(worst, 0))
        groups[target] = worst.rsplit(".gap.", 1)[1]
        if worst in reasons:
            reasons[target] = reasons[worst]


def heterogeneity_test(
    errors: np.ndarray,
    groups: np.ndarray,
    clusters: np.ndarray,
    n_permutations: int,
    seed: int,
    min_size: int,
) -> dict:
    """Lesion-level permutation test of "group and error are unrelated".

    errors: per-image error (0/1, or a mean over training seeds: any value in [0, 1]);
    groups: per-image group values (missing values, see `group_key`, are left out); clusters:
    lesion ids. A lesion is one exchangeable unit with one group: that of its first image whose
    group is known; groups of fewer than `min_size` images are left out. The statistic is the
    between-group variance of the group error rates, weighted by the groups' image counts,
    sum_g n_g (e_g - e)^2 / N; the lesions' group labels are permuted `n_permutations` times and
    p = (1 + #{permuted statistic >= observed}) / (1 + n_permutations).

    Returns {"p_value", "statistic", "n_permutations", "n", "reason"} (p NaN with a reason when
    fewer than two groups qualify or no permutations are asked for).
    """
    errors = np.asarray(errors, dtype=np.float64)
    clusters = np.asarray(clusters)
    keys = group_keys(groups)
    if not (len(errors) == len(keys) == len(clusters)):
        raise BenchboxError(
            f"heterogeneity test: {len(errors)} errors, {len(keys)} group values and {len(clusters)} lesion ids"
        )
    known = np.array([k is not None for k in keys], dtype=bool) & np.isfinite(errors)
    out = {"p_value": np.nan, "statistic": np.nan, "n_permutations": int(n_permutations), "n": 0, "reason": None}
    if not known.any():
        out["reason"] = "no image has a known group"
        return out
    _, lesion = np.unique(clusters[known].astype(str), return_inverse=True)
    _, first = np.unique(lesion, return_index=True)  # each lesion's first image with a known group
    names, code = np.unique(keys[known][first].astype(str), return_inverse=True)
    sizes = np.bincount(lesion, minlength=len(first)).astype(np.float64)  # images per lesion
    error_sums = np.bincount(lesion, weights=errors[known], minlength=len(first))
    group_sizes = np.bincount(code, weights=sizes, minlength=len(names))
    large = group_sizes >= min_size
    if large.sum() < 2:
        out["reason"] = (
            f"fewer than two groups with >= {min_size} images "
            f"({', '.join(f'{g}: {int(s)}' for g, s in zip(names, group_sizes)) or 'none'})"
        )
        return out
    keep = large[code]
    remap = np.cumsum(large) - 1
    code, sizes, error_sums = remap[code[keep]], sizes[keep], error_sums[keep]
    n_groups, total = int(large.sum()), sizes.sum()
    out["n"] = int(total)
    observed = _between_group_variance(code[None, :], sizes, error_sums, n_groups, total)[0]
    out["statistic"] = float(observed)
    if n_permutations < 1:
        out["reason"] = "no permutations requested"
        return out
    rng = np.random.default_rng(seed)
    exceed = 0
    chunk = max(1, (1 << 22) // max(len(code), 1))
    tolerance = 1e-12 * max(abs(observed), 1e-300) + 1e-15
    for start in range(0, n_permutations, chunk):
        rows = min(chunk, n_permutations - start)
        permuted = rng.permuted(np.broadcast_to(code, (rows, len(code))), axis=1)
        statistic = _between_group_variance(permuted, sizes, error_sums, n_groups, total)
        exceed += int((statistic >= observed - tolerance).sum())
    out["p_value"] = (1 + exceed) / (1 + n_permutations)
    return out


def _between_group_variance(
    codes: np.ndarray, sizes: np.ndarray, error_sums: np.ndarray, n_groups: int, total: float
) -> np.ndarray:
    """sum_g n_g (e_g - e)^2 / N for each row of lesion group codes (rows x lesions)."""
    rows = codes.shape[0]
    flat = (codes + n_groups * np.arange(rows)[:, None]).ravel()
    n_g = np.bincount(flat, weights=np.tile(sizes, rows), minlength=rows * n_groups).reshape(rows, n_groups)
    e_g = np.bincount(flat, weights=np.tile(error_sums, rows), minlength=rows * n_groups).reshape(rows, n_groups)
    mean = error_sums.sum() / total
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(n_g > 0, e_g / n_g, mean)
    return (n_g * (rates - mean) ** 2).sum(axis=1) / total


def prediction_errors(predictions) -> dict[str, np.ndarray]:
    """Per-image 0/1 errors of a `suite.Predictions`: "binary" at its operating point (malignant
    when score >= threshold) and, for a 7-class method, "multiclass" at the arg-max."""
    errors = {
        "binary": ((predictions.score >= predictions.threshold).astype(np.int64) != predictions.malignant).astype(
            np.float64
        )
    }
    if predictions.task == "multiclass":
        errors["multiclass"] = (np.argmax(predictions.proba, axis=1) != predictions.y_true).astype(np.float64)
    return errors


def heterogeneity_entries(
    attributes: Mapping[str, np.ndarray],
    errors: Mapping[str, np.ndarray],
    clusters: np.ndarray,
    n_permutations: int,
    seed: int,
    min_size: int,
) -> dict[str, dict]:
    """metrics.json entries subgroup.<attribute>.<task>.heterogeneity_p for every attribute and
    every task of `errors` ("binary", "multiclass": per-image errors, 0/1 or means over seeds):
    value = the permutation p of `heterogeneity_test`, no CI, no direction, n = images tested."""
    out = {}
    for attribute, values in attributes.items():
        for task, error in errors.items():
            test = heterogeneity_test(error, values, clusters, n_permutations, seed, min_size)
            out[f"subgroup.{attribute}.{task}.heterogeneity_p"] = {
                "value": float(test["p_value"]),
                "ci_low": np.nan,
                "ci_high": np.nan,
                "n": int(test["n"]),
                "higher_is_better": None,
                "ci_method": None,
                "reason": test["reason"],
            }
    return out


def _problem(what: str, labels: np.ndarray, class_names: Sequence[str], min_size: int) -> str | None:
    """Why a set of images cannot carry a subgroup metric, or None if it can."""
    if len(labels) < min_size:
        return f"{what} has {len(labels)} images, fewer than the minimum {min_size}"
    present = np.unique(labels)
    if len(present) < 2:
        return f"{what} holds only class {class_names[int(present[0])]!r}"
    return None
