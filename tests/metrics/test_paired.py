"""Paired comparisons: DeLong (textbook and clustered), McNemar, Holm, the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

from benchbox.errors import BenchboxError
from benchbox.labels import MALIGNANT_INDICES
from benchbox.metrics import MethodOutput, compare, compare_all, delong_test, evaluate, holm, mcnemar_test


def textbook_delong(y, score_a, score_b):
    """DeLong et al. (1988) from the explicit matrix of positive-negative comparisons."""
    pos, neg = y == 1, y == 0

    def components(s):
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        return psi.mean(axis=1), psi.mean(axis=0), psi.mean()

    v10a, v01a, auc_a = components(score_a)
    v10b, v01b, auc_b = components(score_b)
    covariance = np.cov(np.stack([v10a, v10b])) / pos.sum() + np.cov(np.stack([v01a, v01b])) / neg.sum()
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    z = (auc_a - auc_b) / np.sqrt(variance)
    return auc_a, auc_b, z, 2 * stats.norm.sf(abs(z))


def correlated_pair(seed, n_lesions=150, gain_a=1.0, gain_b=0.8):
    """Two methods that share each lesion's random effect (so their AUCs are correlated)."""
    rng = np.random.default_rng(seed)
    lesion = np.repeat(np.arange(n_lesions), rng.integers(1, 4, n_lesions))
    y = (rng.random(n_lesions) < 0.35).astype(int)[lesion]
    shared = rng.normal(0, 1, n_lesions)[lesion]
    scores = [1 / (1 + np.exp(-(g * y + shared + rng.normal(0, 0.6, len(y))))) for g in (gain_a, gain_b)]
    return y, scores[0], scores[1], lesion


@pytest.mark.parametrize("rounded", [False, True])
def test_delong_with_one_image_per_cluster_is_textbook_delong(rounded):
    y, a, b, _ = correlated_pair(0)
    if rounded:
        a, b = np.round(a, 1), np.round(b, 1)
    ours = delong_test(y, a, b)
    auc_a, auc_b, z, p = textbook_delong(y, a, b)
    assert (ours["auc_a"], ours["auc_b"]) == pytest.approx((auc_a, auc_b), abs=1e-12)
    assert ours["z"] == pytest.approx(z, rel=1e-9)
    assert ours["p_value"] == pytest.approx(p, rel=1e-9)


def test_clustered_delong_agrees_with_the_paired_clustered_bootstrap():
    for seed in range(6):
        y, a, b, lesion = correlated_pair(seed)
        method_a, method_b = MethodOutput("binary", np.c_[1 - a, a]), MethodOutput("binary", np.c_[1 - b, b])
        row = compare("binary.auc", y, method_a, method_b, lesion)
        assert row["test"] == "delong"
        assert row["p_value"] == pytest.approx(delong_test(y, a, b, lesion)["p_value"])
        assert abs(row["p_value"] - row["p_value_bootstrap"]) < 0.05, (seed, row)
        if seed == 2:  # a pair where the question is open: p well inside (0, 1)
            assert 0.1 < row["p_value"] < 0.5


def test_mcnemar_matches_statsmodels_and_the_binomial_on_known_tables():
    def correctness(table):
        (both, only_a), (only_b, neither) = table
        a = np.repeat([1, 1, 0, 0], [both, only_a, only_b, neither]).astype(bool)
        b = np.repeat([1, 0, 1, 0], [both, only_a, only_b, neither]).astype(bool)
        return a, b

    small = [[50, 12], [4, 34]]  # 16 discordant: exact binomial
    result = mcnemar_test(*correctness(small))
    assert result["table"] == small and result["exact"]
    assert result["p_value"] == pytest.approx(mcnemar(small, exact=True).pvalue, abs=1e-12)
    assert result["p_value"] == pytest.approx(stats.binomtest(4, 16, 0.5).pvalue, abs=1e-12)
    large = [[100, 40], [20, 40]]  # 60 discordant: chi-square, continuity-corrected
    result = mcnemar_test(*correctness(large))
    assert not result["exact"]
    assert result["statistic"] == pytest.approx((abs(40 - 20) - 1) ** 2 / 60, abs=1e-12)
    assert result["p_value"] == pytest.approx(stats.chi2.sf((abs(40 - 20) - 1) ** 2 / 60, 1), abs=1e-12)
    assert result["p_value"] == pytest.approx(mcnemar(large, exact=False, correction=True).pvalue, abs=1e-12)


def test_holm_hand_worked_and_nan_left_out():
    # sorted 0.01, 0.03, 0.04, 0.2 -> 0.04, 0.09, max(0.09, 0.08), 0.2
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.2]), [0.04, 0.09, 0.09, 0.2], atol=1e-12)
    adjusted = holm([0.01, np.nan, 0.03])
    assert np.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [0.02, 0.03], atol=1e-12)


def test_holm_equals_statsmodels_with_ties_and_large_p():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(3)
    for size in (1, 2, 7, 60):
        p = np.round(rng.uniform(0, 1, size) ** 3, 2)  # rounding makes ties; cubing makes small values
        np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], rtol=0, atol=1e-15)


def test_compare_all_pairs_values_and_holm(random_multiclass, make_config):
    config = make_config(300)
    y, proba, lesions = random_multiclass(1, n=400)
    blurred = 0.5 * proba + 0.5 / 7
    noisy = np.random.default_rng(4).dirichlet(np.ones(7), len(y)) * 0.6 + proba * 0.4
    methods = {"sharp": MethodOutput("multiclass", proba), "blurred": MethodOutput("multiclass", blurred),
               "noisy": MethodOutput("multiclass", noisy)}
    rows = compare_all("mcc", y, methods, lesions, config)
    assert [(r["a"], r["b"]) for r in rows] == [("sharp", "blurred"), ("sharp", "noisy"), ("blurred", "noisy")]
    values = {name: evaluate("multiclass", y, m.proba, lesions, config=config, metrics=["mcc"])["mcc"]["value"]
              for name, m in methods.items()}
    for row in rows:
        assert row["test"] == "bootstrap" and row["p_value"] == row["p_value_bootstrap"]
        assert row["diff"] == pytest.approx(values[row["a"]] - values[row["b"]], abs=1e-12)
        assert row["ci_low"] <= row["diff"] <= row["ci_high"]
    np.testing.assert_allclose([r["p_holm"] for r in rows], holm([r["p_value"] for r in rows]))


def test_accuracy_uses_mcnemar_on_the_arg_max(random_multiclass, make_config):
    y, proba, lesions = random_multiclass(2)
    other = np.roll(proba, 1, axis=0)
    row = compare("accuracy", y, MethodOutput("multiclass", proba), MethodOutput("multiclass", other), lesions,
                  make_config(100))
    expected = mcnemar_test(proba.argmax(axis=1) == y, other.argmax(axis=1) == y)
    assert row["test"] == "mcnemar" and row["p_value"] == expected["p_value"]


def test_seven_class_against_binary_method_on_binary_auc(random_multiclass, make_config):
    config = make_config(100)
    y, proba, lesions = random_multiclass(3)
    malignant = np.isin(y, MALIGNANT_INDICES).astype(int)
    score = np.clip(proba[:, list(MALIGNANT_INDICES)].sum(axis=1) ** 0.5, 0, 1)
    row = compare("binary.auc", y, MethodOutput("multiclass", proba), MethodOutput("binary", np.c_[1 - score, score]),
                  lesions, config)
    seven_class = evaluate("multiclass", y, proba, lesions, config=config)["binary.auc"]["value"]
    assert row["value_a"] == pytest.approx(seven_class)
    assert row["value_b"] == pytest.approx(
        evaluate("binary", malignant, np.c_[1 - score, score], lesions, config=config)["binary.auc"]["value"]
    )
    assert row["diff"] == pytest.approx(0.0, abs=1e-12)  # a monotone transform keeps the AUC


def test_comparing_a_seven_class_metric_with_a_binary_method_is_refused(random_multiclass):
    y, proba, lesions = random_multiclass(4)
    with pytest.raises(BenchboxError, match="has no metric 'mcc'"):
        binary_method = MethodOutput("binary", np.c_[1 - proba[:, 0], proba[:, 0]])
        compare("mcc", y, MethodOutput("multiclass", proba), binary_method, lesions)


def test_delong_without_two_lesions_per_class_is_nan_with_a_reason():
    y = np.array([1, 1, 0, 0, 0])
    result = delong_test(y, np.array([0.9, 0.8, 0.1, 0.2, 0.3]), np.array([0.7, 0.6, 0.5, 0.2, 0.1]),
                         np.array(["m", "m", "b1", "b2", "b3"]))  # both malignant images are one lesion
    assert np.isnan(result["p_value"]) and "two lesions" in result["reason"]
    same = delong_test(y, np.array([0.9, 0.8, 0.1, 0.2, 0.3]), np.array([0.9, 0.8, 0.1, 0.2, 0.3]))
    assert same["p_value"] == 1.0 and same["difference"] == 0.0
