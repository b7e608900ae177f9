"""Intervals that include training noise: a method trained with several seeds, scored on one test set.

Why: a lesion bootstrap of one trained model leaves training noise out (the seed, and a
machine's numerics, which act like another seed), and on benchbox's boards that noise is as
large as the lesion noise.

All seeds are scored on the same test images with the same lesion resamples, so their replicate
rows (point, bootstrap, jackknife; see bootstrap.py) line up. The estimate is the mean over the
S seeds. Its uncertainty has two parts:

* lesion part: the lesion bootstrap of the seed mean itself (each resample scores every seed on
  the same resampled lesions and averages), giving [lo_L, hi_L] (BCa, percentile fallback), and
  se_L = (hi_L - lo_L) / (2 z);
* seed part: se_S = s / sqrt(S), s the standard deviation of the per-seed estimates on the
  whole test set (which holds the lesion sample fixed, so s is training noise alone).

The interval widens each side of the lesion interval by the seed part, in quadrature, and takes
Student's t with Welch-Satterthwaite degrees of freedom instead of the normal quantile z:

    low  = mean - (t / z) * sqrt((mean - lo_L)^2 + (z se_S)^2)
    high = mean + (t / z) * sqrt((hi_L - mean)^2 + (z se_S)^2)
    dof  = (se_L^2 + se_S^2)^2 / (se_S^4 / (S - 1))        (the lesion part has many clusters)

With no seed spread it is the lesion interval; with no lesion spread it is the t interval of the
seed mean; it always contains the estimate. With one seed the lesion interval is returned and
marked: training noise is then not included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import norm, t as student_t

from .bootstrap import confidence_intervals

SEED_AWARE = "seed+lesion"  # ci_method prefix of seed-aware intervals
ONE_SEED_NOTE = "one training seed: the interval covers lesion sampling only, not training noise"


# Metrics whose values are bounded: a seed-aware interval is clipped to the range (the t widening
# is symmetric and would otherwise run past 1 for an AUC near 1). Matched on the metric's own name
# (a subgroup name's metric part); a difference of two such metrics lies in (low - high, high - low).
NON_NEGATIVE = ("nll", "latency", "throughput", "params", "flops", "memory", "support")


def value_range(name: str) -> tuple[float, float]:
    """(low, high) that a metric's value can take: [-1, 1] for MCC, [0, 1] for proportions, AUCs,
    calibration errors and explanation scores, [0, inf) for counts, times and the log loss."""
    gap = False
    if name.startswith("subgroup."):
        rest = name.split(".", 2)[2]
        gap = ".gap." in rest or ".adjusted_gap." in rest or rest.endswith(".worst_gap")
        name = rest.split(".adjusted_gap.")[0].split(".gap.")[0].removesuffix(".worst_gap")
        if name.endswith("heterogeneity_p"):
            return 0.0, 1.0
    if any(word in name for word in NON_NEGATIVE):
        return (-np.inf, np.inf) if gap else (0.0, np.inf)
    low, high = (-1.0, 1.0) if "mcc" in name else (0.0, 1.0)
    return (low - high, high - low) if gap else (low, high)


def satterthwaite_dof(se_lesion: np.ndarray, se_seed: np.ndarray, n_seeds: int) -> np.ndarray:
    """Welch-Satterthwaite degrees of freedom of se_L^2 + se_S^2 (inf where there is no seed spread)."""
    se_lesion, se_seed = np.asarray(se_lesion, float), np.asarray(se_seed, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        dof = (se_lesion**2 + se_seed**2) ** 2 / (se_seed**4 / max(n_seeds - 1, 1))
    return np.where(se_seed > 0, dof, np.inf)


def seed_aware_bounds(
    per_seed: np.ndarray, lesion_low: np.ndarray, lesion_high: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high, dof) per metric from per-seed estimates (M x S) and the lesion interval of their mean."""
    per_seed = np.atleast_2d(np.asarray(per_seed, float))
    n_seeds = per_seed.shape[1]
    mean = per_seed.mean(axis=1)
    spread = np.ptp(per_seed, axis=1) > 0  # equal values: exactly no seed part (std would leave rounding noise)
    se_seed = np.where(spread, per_seed.std(axis=1, ddof=1) / np.sqrt(n_seeds), 0.0) if n_seeds > 1 else np.zeros(len(mean))
    z = norm.ppf(1 - alpha / 2)
    se_lesion = (np.maximum(lesion_high - lesion_low, 0.0)) / (2 * z)
    dof = satterthwaite_dof(se_lesion, se_seed, n_seeds)
    low, high = widen(mean, lesion_low, lesion_high, se_seed, dof, alpha)
    return mean, low, high, dof


def widen(center, lesion_low, lesion_high, se_seed, dof, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Each side of the lesion interval widened by the seed part in quadrature, on the t scale."""
    z = norm.ppf(1 - alpha / 2)
    dof = np.asarray(dof, float)
    factor = np.where(np.isfinite(dof), student_t.ppf(1 - alpha / 2, np.minimum(dof, 1e12)) / z, 1.0)
    below = np.maximum(center - lesion_low, 0.0)
    above = np.maximum(lesion_high - center, 0.0)
    seed_half = z * np.asarray(se_seed, float)
    return center - factor * np.sqrt(below**2 + seed_half**2), center + factor * np.sqrt(above**2 + seed_half**2)


def pool_replicates(
    per_seed: Sequence[Mapping[str, np.ndarray]], n_bootstrap: int, alpha: float, method: str
) -> dict[str, dict]:
    """Seed-aware summaries {name: value, ci_low, ci_high, ci_method, per_seed, dof, reason} of
    replicate rows that line up across seeds (same test images, same lesion resamples).

    A metric undefined (NaN) in some seeds is pooled over the seeds where it is defined.
    """
    names = list(dict.fromkeys(name for table in per_seed for name in table))
    out = {}
    for name in names:
        rows = [table[name] for table in per_seed if name in table]
        defined = [r for r in rows if np.isfinite(r[0])]
        values = [float(r[0]) for r in rows]
        if not defined:
            out[name] = {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                         "ci_method": None, "per_seed": values, "dof": None, "reason": None}
            continue
        averaged = np.mean(np.stack(defined), axis=0)
        lesion = confidence_intervals(averaged[None], n_bootstrap, alpha, method)
        reason = lesion.reason[0]
        if lesion.method[0] is None:  # no lesion interval: no interval at all
            mean, low, high, dof = float(averaged[0]), np.nan, np.nan, None
        else:
            point = np.array([[float(r[0]) for r in defined]])
            mean, low, high, dof = (float(v[0]) for v in seed_aware_bounds(point, lesion.low, lesion.high, alpha))
            low, high = _clip(name, low, high, mean)
        if len(defined) < len(rows):
            reason = f"pooled over the {len(defined)} of {len(rows)} seeds where the metric is defined"
        out[name] = {
            "value": mean, "ci_low": float(low), "ci_high": float(high),
            "ci_method": _ci_method(lesion.method[0], len(defined)), "per_seed": values,
            "dof": _dof(dof), "reason": reason,
        }
    return out


def pool_entries(per_seed: Sequence[Mapping[str, dict]], alpha: float) -> dict[str, dict]:
    """Seed-aware summaries of metrics that have no replicate rows to pool (explanation scores,
    segmentation, efficiency), from each seed's metrics.json entry: the lesion part of each side
    is the mean over seeds of that side's half-width, which is conservative (it assumes the seeds'
    lesion errors are perfectly correlated)."""
    names = list(dict.fromkeys(name for entries in per_seed for name in entries))
    out = {}
    for name in names:
        entries = [{**e[name], **{k: _float(e[name].get(k)) for k in ("value", "ci_low", "ci_high")}}
                   for e in per_seed if name in e]
        first = entries[0]
        values = [e["value"] for e in entries]
        defined = [e for e in entries if np.isfinite(e["value"])]
        summary = {key: first.get(key) for key in ("n", "higher_is_better")}
        summary.update(value=float("nan"), ci_low=float("nan"), ci_high=float("nan"), ci_method=None,
                       per_seed=values, dof=None, reason=next((e.get("reason") for e in entries if e.get("reason")), None))
        if defined:
            point = np.array([[e["value"] for e in defined]])
            mean = point.mean()
            summary["value"] = float(mean)
            with_ci = [e for e in defined if np.isfinite(e["ci_low"]) and np.isfinite(e["ci_high"])]
            if len(with_ci) == len(defined):
                below = np.mean([max(e["value"] - e["ci_low"], 0.0) for e in defined])
                above = np.mean([max(e["ci_high"] - e["value"], 0.0) for e in defined])
                _, low, high, dof = seed_aware_bounds(point, np.array([mean - below]), np.array([mean + above]), alpha)
                low, high = _clip(name, float(low[0]), float(high[0]), float(mean))
                summary.update(ci_low=low, ci_high=high, dof=_dof(float(dof[0])),
                               ci_method=_ci_method(first.get("ci_method") or "percentile", len(defined)))
        out[name] = summary
    return out


def seed_aware_difference(
    a: Sequence[np.ndarray], b: Sequence[np.ndarray], n_bootstrap: int, alpha: float, method: str
) -> dict:
    """Difference mean(a) - mean(b) of two methods' per-seed replicate rows (same lesion resamples),
    with a seed-aware interval and a two-sided t-test p-value.

    The seeds of two methods are independent trainings, so the seed part is Welch's
    s_a^2 / S_a + s_b^2 / S_b with Welch-Satterthwaite degrees of freedom; the lesion part is the
    paired bootstrap of the difference of the seed means.
    """
    a, b = np.stack(a), np.stack(b)
    difference = a.mean(axis=0) - b.mean(axis=0)
    diff = float(difference[0])
    lesion = confidence_intervals(difference[None], n_bootstrap, alpha, method)
    boot = difference[1 : 1 + n_bootstrap]
    boot = boot[np.isfinite(boot)]
    var_lesion = float(boot.var(ddof=1)) if len(boot) > 1 else 0.0
    seed_parts = [(x[:, 0].var(ddof=1) / len(x), len(x) - 1) for x in (a, b) if len(x) > 1]
    var_seed = sum(v for v, _ in seed_parts)
    denominator = sum(v**2 / k for v, k in seed_parts)
    total = var_lesion + var_seed
    dof = total**2 / denominator if denominator > 0 else np.inf
    if not np.isfinite(diff):
        p_value = float("nan")
    elif total == 0:
        p_value = 1.0 if diff == 0 else 0.0
    else:
        p_value = float(2 * student_t.sf(abs(diff) / np.sqrt(total), min(dof, 1e12)))
    low = high = float("nan")
    if lesion.method[0] is not None:
        low, high = (float(v) for v in widen(diff, lesion.low[0], lesion.high[0], np.sqrt(var_seed), dof, alpha))
    return {"diff": diff, "ci_low": low, "ci_high": high, "p_value": p_value, "se": float(np.sqrt(total)),
            "dof": _dof(dof), "ci_method": _ci_method(lesion.method[0], min(len(a), len(b))),
            "reason": lesion.reason[0]}


def _ci_method(lesion_method: str | None, n_seeds: int) -> str | None:
    if lesion_method is None:
        return None
    return f"{SEED_AWARE} ({lesion_method}, t)" if n_seeds > 1 else lesion_method


def _clip(name: str, low: float, high: float, value: float) -> tuple[float, float]:
    """The interval clipped to the metric's range (never past its estimate)."""
    lowest, highest = value_range(name)
    return float(min(max(low, lowest), value)), float(max(min(high, highest), value))


def _float(value) -> float:
    return float("nan") if value is None else float(value)


def _dof(dof) -> float | None:
    return None if dof is None or not np.isfinite(dof) else float(dof)
