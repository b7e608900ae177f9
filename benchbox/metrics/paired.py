"""Paired comparison of methods scored on the same images: the difference of a metric with a
paired lesion-clustered bootstrap CI, DeLong's test for binary AUC (Obuchowski's clustered
form), McNemar's test for accuracy, and Holm's correction over all pairs.

Both methods are resampled with the same lesion draws, so the CI of the difference keeps the
correlation between them (two separate CIs that overlap say little about the difference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.stats import norm, rankdata
from statsmodels.stats.contingency_tables import mcnemar

from ..errors import BenchboxError
from ..labels import MALIGNANT_INDICES
from .bootstrap import confidence_intervals, draw_resamples
from .classification import predicted_class
from .config import MetricsConfig, load_config
from .seeds import seed_aware_difference
from .suite import Predictions, compute_replicates, metric_names, prepare
from .validation import validate_inputs

# McNemar's exact binomial form below this many discordant pairs, the chi-square form above.
MCNEMAR_EXACT_BELOW = 25
ACCURACY_METRICS = ("accuracy", "binary.accuracy")


@dataclass(frozen=True)
class MethodOutput:
    """What a comparison needs of one method: its task, probabilities and binary operating point."""

    task: str
    proba: np.ndarray
    threshold: float | None = None


def compare(
    metric: str,
    y_true: np.ndarray,
    a: MethodOutput,
    b: MethodOutput,
    clusters: np.ndarray,
    config: MetricsConfig | None = None,
) -> dict:
    """Difference a - b (`diff`) of `metric` on the same images, with CI and a two-sided p-value.

    y_true: class indices into CLASSES when either method is 7-class, else 0/1. The p-value is
    DeLong's for binary.auc, McNemar's for accuracy and binary.accuracy, and the paired
    bootstrap's otherwise (the bootstrap's is always given as p_value_bootstrap).
    """
    return compare_all(metric, y_true, {"a": a, "b": b}, clusters, config)[0]


def compare_all(
    metric: str,
    y_true: np.ndarray,
    methods: Mapping[str, MethodOutput],
    clusters: np.ndarray,
    config: MetricsConfig | None = None,
) -> list[dict]:
    """Every pair (a, b in the given order) compared on `metric`, with Holm-adjusted p-values (`p_holm`).

    Each row: a, b, metric, value_a, value_b, diff (a - b), ci_low, ci_high, ci_method, test
    ("delong", "mcnemar" or "bootstrap"), p_value, p_value_bootstrap, p_holm, n, reason.
    """
    config = config or load_config()
    settings = config.bootstrap
    y_true = np.asarray(y_true)
    any_multiclass = any(m.task == "multiclass" for m in methods.values())
    predictions = {name: _prepare(metric, name, output, y_true, any_multiclass, clusters)
                   for name, output in methods.items()}
    resamples = draw_resamples(clusters, settings.n_resamples, settings.seed)
    replicates = {name: compute_replicates(p, resamples, [metric])[metric][:, 0] for name, p in predictions.items()}
    rows = []
    for name_a, name_b in combinations(methods, 2):
        difference = replicates[name_a] - replicates[name_b]
        interval = confidence_intervals(difference[None], resamples.n_bootstrap, settings.alpha, settings.method)
        p_boot = bootstrap_p_value(difference[1 : 1 + resamples.n_bootstrap])
        pa, pb = predictions[name_a], predictions[name_b]
        row = {
            "a": name_a,
            "b": name_b,
            "metric": metric,
            "value_a": float(replicates[name_a][0]),
            "value_b": float(replicates[name_b][0]),
            "diff": float(difference[0]),
            "ci_low": float(interval.low[0]),
            "ci_high": float(interval.high[0]),
            "ci_method": interval.method[0],
            "p_value_bootstrap": p_boot,
            "n": len(y_true),
            "reason": interval.reason[0],
        }
        if metric == "binary.auc":
            delong = delong_test(pa.malignant, pa.score, pb.score, clusters)
            row.update(test="delong", p_value=delong["p_value"], reason=delong["reason"] or row["reason"])
        elif metric in ACCURACY_METRICS:
            result = mcnemar_test(_correct(pa, metric), _correct(pb, metric))
            row.update(test="mcnemar", p_value=result["p_value"])
        else:
            row.update(test="bootstrap", p_value=p_boot)
        rows.append(row)
    for row, adjusted in zip(rows, holm([row["p_value"] for row in rows])):
        row["p_holm"] = float(adjusted)
    return rows


def compare_all_seeds(
    metric: str,
    y_true: np.ndarray,
    methods: Mapping[str, Sequence[MethodOutput]],
    clusters: np.ndarray,
    config: MetricsConfig | None = None,
) -> list[dict]:
    """`compare_all` for methods trained with several seeds (one MethodOutput per seed).

    When every method has one seed this is `compare_all`. Otherwise each difference is of the
    seed means, with a seed-aware interval and t-test (seeds.seed_aware_difference: the paired
    lesion bootstrap of the difference plus Welch's seed part), test "seed-aware t"; Holm over all pairs.
    """
    if all(len(outputs) == 1 for outputs in methods.values()):
        return compare_all(metric, y_true, {name: outputs[0] for name, outputs in methods.items()}, clusters, config)
    config = config or load_config()
    settings = config.bootstrap
    y_true = np.asarray(y_true)
    any_multiclass = any(o.task == "multiclass" for outputs in methods.values() for o in outputs)
    resamples = draw_resamples(clusters, settings.n_resamples, settings.seed)
    replicates = {}
    for name, outputs in methods.items():
        replicates[name] = [
            compute_replicates(_prepare(metric, name, output, y_true, any_multiclass, clusters), resamples,
                               [metric])[metric][:, 0]
            for output in outputs
        ]
    rows = []
    for name_a, name_b in combinations(methods, 2):
        result = seed_aware_difference(replicates[name_a], replicates[name_b], resamples.n_bootstrap,
                                       settings.alpha, settings.method)
        rows.append({
            "a": name_a, "b": name_b, "metric": metric,
            "value_a": float(np.mean([r[0] for r in replicates[name_a]])),
            "value_b": float(np.mean([r[0] for r in replicates[name_b]])),
            "diff": result["diff"], "ci_low": result["ci_low"], "ci_high": result["ci_high"],
            "ci_method": result["ci_method"], "test": "seed-aware t", "p_value": result["p_value"],
            "dof": result["dof"], "n": len(y_true), "n_seeds_a": len(replicates[name_a]),
            "n_seeds_b": len(replicates[name_b]), "reason": result["reason"],
        })
    for row, adjusted in zip(rows, holm([row["p_value"] for row in rows])):
        row["p_holm"] = float(adjusted)
    return rows


def _prepare(metric: str, name: str, output: MethodOutput, y_true: np.ndarray, any_multiclass: bool,
             clusters: np.ndarray) -> Predictions:
    """One method's predictions for a comparison; a binary method beside a 7-class one gets 0/1 labels."""
    if metric not in metric_names(output.task):
        raise BenchboxError(f"method {name!r} ({output.task}) has no metric {metric!r} to compare.")
    labels = y_true
    if output.task == "binary" and any_multiclass:
        labels = np.isin(y_true, MALIGNANT_INDICES).astype(np.int64)
    validate_inputs(name, output.task, labels, output.proba, clusters)
    return prepare(output.task, labels, output.proba, output.threshold)


def bootstrap_p_value(differences: np.ndarray) -> float:
    """Two-sided p-value of "no difference" from paired bootstrap differences.

    Twice the smaller share of resamples on either side of 0 (with the +1 correction that keeps
    it above 0): the smallest alpha whose percentile interval excludes 0.
    """
    finite = differences[np.isfinite(differences)]
    if len(finite) == 0:
        return float("nan")
    below, above = (finite <= 0).sum(), (finite >= 0).sum()
    return float(min(1.0, 2 * (min(below, above) + 1) / (len(finite) + 1)))


def delong_test(
    malignant: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, clusters: np.ndarray | None = None
) -> dict:
    """DeLong's test of AUC(a) = AUC(b) on the same images, clustered by lesion (Obuchowski 1997).

    Placement values (DeLong et al. 1988, via midranks as Sun & Xu 2014) are summed per cluster
    and the covariance is estimated across clusters; with one image per cluster this is exactly
    DeLong's original test. Returns auc_a, auc_b, difference, se, z, p_value and reason (why
    the test is undefined, else None).
    """
    positive = np.asarray(malignant).astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    ids = np.arange(len(positive)) if clusters is None else clusters
    _, cluster = np.unique(np.asarray(ids).astype(str), return_inverse=True)
    if len(np.unique(cluster[positive])) < 2 or len(np.unique(cluster[~positive])) < 2:
        nan = float("nan")
        return {"auc_a": nan, "auc_b": nan, "difference": nan, "se": nan, "z": nan, "p_value": nan,
                "reason": "DeLong needs malignant and benign images from at least two lesions each"}
    scores = np.stack([score_a, score_b], axis=1).astype(np.float64)
    ranks_all = rankdata(scores, axis=0)
    placement = np.zeros_like(scores)  # V10 of positives, V01 of negatives
    placement[positive] = (ranks_all[positive] - rankdata(scores[positive], axis=0)) / n_neg
    placement[~positive] = 1.0 - (ranks_all[~positive] - rankdata(scores[~positive], axis=0)) / n_pos
    auc = placement[positive].mean(axis=0)
    n_clusters = cluster.max() + 1
    pos_count = np.bincount(cluster, weights=positive, minlength=n_clusters)
    neg_count = np.bincount(cluster, weights=~positive, minlength=n_clusters)

    def per_cluster(values: np.ndarray) -> np.ndarray:  # (clusters x 2) sums over each cluster's images
        return np.stack([np.bincount(cluster, weights=v, minlength=n_clusters) for v in values.T], axis=1)

    pos_dev = per_cluster(placement * positive[:, None]) - pos_count[:, None] * auc
    neg_dev = per_cluster(placement * ~positive[:, None]) - neg_count[:, None] * auc
    k10, k01 = int((pos_count > 0).sum()), int((neg_count > 0).sum())
    s10 = k10 / ((k10 - 1) * n_pos) * pos_dev.T @ pos_dev
    s01 = k01 / ((k01 - 1) * n_neg) * neg_dev.T @ neg_dev
    s11 = n_clusters / (n_clusters - 1) * pos_dev.T @ neg_dev
    covariance = s10 / n_pos + s01 / n_neg + (s11 + s11.T) / (n_pos * n_neg)
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = float(auc[0] - auc[1])
    se = float(np.sqrt(max(variance, 0.0)))
    if se == 0.0:
        z, p = (0.0, 1.0) if difference == 0 else (float("inf") * np.sign(difference), 0.0)
    else:
        z = difference / se
        p = float(2 * norm.sf(abs(z)))
    return {"auc_a": float(auc[0]), "auc_b": float(auc[1]), "difference": difference, "se": se, "z": float(z),
            "p_value": p, "reason": None}


def mcnemar_test(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's test (statsmodels) of equal accuracy from per-image correctness of two methods.

    table = [[both correct, only a correct], [only b correct, both wrong]]; the exact binomial
    form when fewer than 25 images are discordant, else chi-square with continuity correction.
    """
    a, b = np.asarray(correct_a).astype(bool), np.asarray(correct_b).astype(bool)
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    exact = bool(table[0, 1] + table[1, 0] < MCNEMAR_EXACT_BELOW)
    result = mcnemar(table, exact=exact, correction=True)
    return {
        "table": table.tolist(), "statistic": float(result.statistic), "p_value": float(result.pvalue), "exact": exact
    }


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values; NaN entries stay NaN and do not count in the family.

    The step-down written out rather than statsmodels' `multipletests(method="holm")`, which gives
    the same values (tests/metrics/test_paired.py) but runs `gc.collect()` on every call: 0.1 s in a
    small process, seconds in a large one, and the gate calls it once per check.
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(len(p), np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if finite.size:
        order = finite[np.argsort(p[finite], kind="stable")]
        steps = p[order] * np.arange(finite.size, 0, -1)
        adjusted[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
    return adjusted


def _correct(predictions: Predictions, metric: str) -> np.ndarray:
    if metric == "binary.accuracy":
        return (predictions.score >= predictions.threshold) == (predictions.malignant == 1)
    return predicted_class(predictions.proba) == predictions.y_true
