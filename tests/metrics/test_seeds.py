"""Seed-aware intervals and comparisons (metrics/seeds.py), against hand computations."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from benchbox.metrics.paired import MethodOutput, compare_all, compare_all_seeds
from benchbox.metrics.seeds import pool_entries, seed_aware_bounds, seed_aware_difference, value_range
from benchbox.metrics.suite import evaluate, evaluate_seeds


def test_no_seed_spread_gives_the_lesion_interval():
    mean, low, high, dof = seed_aware_bounds(np.array([[0.7, 0.7, 0.7]]), np.array([0.62]), np.array([0.75]), 0.05)
    assert (mean[0], low[0], high[0], dof[0]) == (pytest.approx(0.7), pytest.approx(0.62), pytest.approx(0.75), np.inf)


def test_no_lesion_spread_gives_the_t_interval_of_the_seed_mean():
    values = np.array([0.70, 0.74, 0.66])
    mean, low, high, dof = seed_aware_bounds(values[None], np.array([0.70]), np.array([0.70]), 0.05)
    half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / np.sqrt(3)
    assert dof[0] == pytest.approx(2.0)
    assert (low[0], high[0]) == (pytest.approx(0.70 - half), pytest.approx(0.70 + half))


def test_both_parts_add_in_quadrature_on_the_t_scale():
    values = np.array([0.70, 0.74, 0.66])
    se_seed = values.std(ddof=1) / np.sqrt(3)
    z = stats.norm.ppf(0.975)
    lesion_low, lesion_high = 0.70 - 0.05, 0.70 + 0.08  # asymmetric lesion interval
    se_lesion = 0.13 / (2 * z)
    dof = (se_lesion**2 + se_seed**2) ** 2 / (se_seed**4 / 2)
    factor = stats.t.ppf(0.975, dof) / z
    _, low, high, got_dof = seed_aware_bounds(values[None], np.array([lesion_low]), np.array([lesion_high]), 0.05)
    assert got_dof[0] == pytest.approx(dof)
    assert low[0] == pytest.approx(0.70 - factor * np.hypot(0.05, z * se_seed))
    assert high[0] == pytest.approx(0.70 + factor * np.hypot(0.08, z * se_seed))
    assert low[0] < lesion_low and high[0] > lesion_high


def test_pool_entries_uses_mean_half_widths_and_keeps_per_seed_values():
    entries = [{"m": {"value": v, "ci_low": v - 0.1, "ci_high": v + 0.2, "n": 8, "higher_is_better": True,
                      "ci_method": "bca"}} for v in (0.5, 0.6)]
    pooled = pool_entries(entries, 0.05)["m"]
    expected = seed_aware_bounds(np.array([[0.5, 0.6]]), np.array([0.45]), np.array([0.75]), 0.05)
    assert pooled["value"] == pytest.approx(0.55)
    assert (pooled["ci_low"], pooled["ci_high"]) == (pytest.approx(expected[1][0]), pytest.approx(expected[2][0]))
    assert pooled["per_seed"] == [0.5, 0.6] and pooled["ci_method"].startswith("seed+lesion")


def _data(seed=0, n=240):
    rng = np.random.default_rng(seed)
    lesions = np.repeat(np.arange(n // 2), 2).astype(str)
    y = rng.integers(0, 2, n)
    probas = []
    for s in range(3):
        score = np.clip(0.5 + (y - 0.5) * (0.3 + 0.1 * s) + rng.normal(0, 0.3, n), 0.001, 0.999)
        probas.append(np.stack([1 - score, score], axis=1))
    return y, lesions, probas


def test_one_seed_equals_evaluate_and_several_seeds_average_with_wider_intervals():
    y, lesions, probas = _data()
    one = evaluate_seeds("binary", y, probas[:1], lesions, thresholds=[0.5])
    single = evaluate("binary", y, probas[0], lesions, threshold=0.5)
    for name, entry in single.items():
        for key in ("value", "ci_low", "ci_high"):
            assert one[name][key] == pytest.approx(entry[key], nan_ok=True)
    pooled = evaluate_seeds("binary", y, probas, lesions, thresholds=[0.5] * 3)["binary.auc"]
    aucs = [roc_auc_score(y, p[:, 1]) for p in probas]
    assert pooled["value"] == pytest.approx(np.mean(aucs))
    assert pooled["per_seed"] == pytest.approx(aucs) and pooled["n_seeds"] == 3
    assert pooled["ci_low"] <= pooled["value"] <= pooled["ci_high"]


def test_seed_aware_comparison_tests_the_difference_of_seed_means():
    y, lesions, probas = _data(1)
    _, _, other = _data(2)
    outputs = {"a": [MethodOutput("binary", p, 0.5) for p in probas],
               "b": [MethodOutput("binary", p, 0.5) for p in other]}
    row = compare_all_seeds("binary.auc", y, outputs, lesions)[0]
    diff = np.mean([roc_auc_score(y, p[:, 1]) for p in probas]) - np.mean([roc_auc_score(y, p[:, 1]) for p in other])
    assert row["diff"] == pytest.approx(diff) and row["test"] == "seed-aware t"
    assert row["ci_low"] <= row["diff"] <= row["ci_high"]
    assert 0 <= row["p_value"] <= 1 and row["p_holm"] == pytest.approx(row["p_value"])
    single = compare_all_seeds("binary.auc", y, {k: v[:1] for k, v in outputs.items()}, lesions)[0]
    assert single == compare_all("binary.auc", y, {k: v[0] for k, v in outputs.items()}, lesions)[0]


def test_identical_methods_differ_by_nothing():
    rows = [np.array([0.7, 0.69, 0.71, 0.72, 0.7])] * 3
    result = seed_aware_difference(rows, rows, 3, 0.05, "percentile")
    assert result["diff"] == 0 and result["p_value"] == 1.0


@pytest.mark.parametrize("name, expected", [
    ("binary.auc", (0.0, 1.0)), ("mcc", (-1.0, 1.0)), ("latency.ms_p50", (0.0, np.inf)), ("binary.nll", (0.0, np.inf)),
    ("subgroup.sex.binary.auc.gap.female", (-1.0, 1.0)), ("subgroup.sex.mcc.worst_gap", (-2.0, 2.0)),
    ("subgroup.sex.binary.auc.female", (0.0, 1.0)), ("subgroup.sex.binary.heterogeneity_p", (0.0, 1.0)),
])
def test_value_ranges(name, expected):
    assert value_range(name) == expected


def test_a_seed_aware_interval_stays_inside_the_metric_range():
    entries = [{"binary.auc": {"value": v, "ci_low": v - 0.05, "ci_high": min(v + 0.03, 1.0)}} for v in (0.99, 0.9, 0.97)]
    pooled = pool_entries(entries, 0.05)["binary.auc"]
    assert pooled["ci_high"] == 1.0 and pooled["ci_low"] < pooled["value"] < 1.0
