"""Binary metrics against scikit-learn (1e-9), the operating point, and the recall-constrained threshold."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from benchbox.errors import BenchboxError
from benchbox.labels import MALIGNANT_INDICES
from benchbox.metrics import binary_view, evaluate, recall_constrained_threshold
from benchbox.metrics.bootstrap import draw_resamples
from benchbox.metrics.suite import compute_replicates, prepare


def sens_at_spec(y, score, specificity):
    fpr, tpr, _ = sk.roc_curve(y, score, drop_intermediate=False)
    return tpr[fpr <= 1 - specificity + 1e-9].max()


def pauc_above_sensitivity(y, score, sensitivity):
    """Unnormalised area where TPR >= sensitivity, via sklearn's McClish-standardised partial AUC of
    the flipped problem (labels inverted, scores negated: its ROC is (1 - TPR, 1 - FPR))."""
    max_fpr = 1 - sensitivity
    standardised = sk.roc_auc_score(1 - y, -score, max_fpr=max_fpr)
    min_area, max_area = 0.5 * max_fpr**2, max_fpr
    return min_area + (2 * standardised - 1) * (max_area - min_area)


def reference(y, score, threshold):
    flagged = (score >= threshold).astype(int)
    return {
        "binary.accuracy": sk.accuracy_score(y, flagged),
        "binary.sensitivity": sk.recall_score(y, flagged, zero_division=np.nan),
        "binary.specificity": sk.recall_score(1 - y, 1 - flagged, zero_division=np.nan),
        "binary.precision": sk.precision_score(y, flagged, zero_division=np.nan),
        "binary.f1": sk.f1_score(y, flagged, zero_division=np.nan),
        "binary.auc": sk.roc_auc_score(y, score),
        "binary.ap": sk.average_precision_score(y, score),
        "binary.sens_at_spec80": sens_at_spec(y, score, 0.80),
        "binary.sens_at_spec90": sens_at_spec(y, score, 0.90),
        "binary.sens_at_spec95": sens_at_spec(y, score, 0.95),
        "binary.pauc_sens80": pauc_above_sensitivity(y, score, 0.80) / 0.2,
        "binary.brier": sk.brier_score_loss(y, score),
        "binary.nll": sk.log_loss(y, score, labels=[0, 1]),
    }


def binary_data(seed, n=400, rounded=False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    score = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.3 * y - 0.8)))
    if rounded:  # many tied scores
        score = np.round(score, 1)
    lesions = np.repeat(np.arange(n), rng.integers(1, 4, size=n))[:n].astype(str)
    return y, np.c_[1 - score, score], lesions


@pytest.mark.parametrize("seed, rounded, threshold", [(0, False, 0.5), (1, False, 0.3), (2, True, 0.5), (3, True, 0.7)])
def test_binary_metrics_match_sklearn(make_config, seed, rounded, threshold):
    y, proba, lesions = binary_data(seed, rounded=rounded)
    result = evaluate("binary", y, proba, lesions, threshold=threshold, config=make_config(0))
    for name, expected in reference(y, proba[:, 1], threshold).items():
        assert result[name]["value"] == pytest.approx(expected, abs=1e-9), name


def test_seven_class_binary_score_is_the_malignant_sum(random_multiclass, make_config):
    y, proba, lesions = random_multiclass(11)
    malignant, score = binary_view("multiclass", y, proba)
    assert malignant.tolist() == np.isin(y, MALIGNANT_INDICES).astype(int).tolist()
    np.testing.assert_allclose(score, proba[:, [0, 1, 4]].sum(axis=1))  # akiec, bcc, mel
    result = evaluate("multiclass", y, proba, lesions, threshold=0.4, config=make_config(0))
    for name, expected in reference(malignant, score, 0.4).items():
        assert result[name]["value"] == pytest.approx(expected, abs=1e-9), name


@pytest.mark.parametrize("rounded", [False, True])
def test_resample_rows_equal_sklearn_on_the_materialised_resample(rounded):
    y, proba, lesions = binary_data(4, n=250, rounded=rounded)
    resamples = draw_resamples(lesions, n_resamples=15, seed=1)
    replicates = compute_replicates(prepare("binary", y, proba, 0.5), resamples)
    n_boot = resamples.n_bootstrap
    for row in (1, 9, n_boot + 2, n_boot + 40):
        if row <= n_boot:
            repeats = resamples.counts[resamples.cluster_index, row - 1].astype(int)
        else:
            repeats = (resamples.cluster_index != row - n_boot - 1).astype(int)
        index = np.repeat(np.arange(len(y)), repeats)
        for name, expected in reference(y[index], proba[index, 1], 0.5).items():
            tolerance = 1e-9 if name in ("binary.auc",) or "sens_at" in name else 1e-6
            assert replicates[name][row, 0] == pytest.approx(expected, abs=tolerance), (name, row)


def test_ill_defined_rates_are_nan_with_a_reason_not_one(make_config):
    """isic-challenge-scoring returns 1.0 here; an all-benign set has no sensitivity at all."""
    y = np.zeros(40, dtype=int)
    score = np.linspace(0.05, 0.45, 40)
    result = evaluate("binary", y, np.c_[1 - score, score], np.arange(40), config=make_config(50))
    for name in ("binary.sensitivity", "binary.precision", "binary.auc", "binary.sens_at_spec90", "binary.pauc_sens80"):
        assert np.isnan(result[name]["value"]), name
        assert result[name]["reason"], name
        assert np.isnan(result[name]["ci_low"]) and result[name]["ci_method"] is None
    assert result["binary.specificity"]["value"] == 1.0


def test_all_equal_scores_give_chance_auc_and_nan_precision_without_error(make_config):
    y = np.tile([0, 1, 0], 30)
    score = np.full(len(y), 0.3)
    result = evaluate("binary", y, np.c_[1 - score, score], np.arange(len(y)) // 2, config=make_config(200))
    assert result["binary.auc"]["value"] == 0.5
    # every resample gives 0.5 too: BCa is degenerate, the percentile interval is [0.5, 0.5]
    assert result["binary.auc"]["ci_method"] == "percentile"
    assert (result["binary.auc"]["ci_low"], result["binary.auc"]["ci_high"]) == (0.5, 0.5)
    assert np.isnan(result["binary.precision"]["value"])
    assert result["binary.precision"]["reason"] == "no image was predicted malignant"
    assert result["binary.sens_at_spec90"]["value"] == 0.0


def test_recall_constrained_threshold_matches_a_brute_force_sweep():
    y, proba, _ = binary_data(5, n=300)
    score = proba[:, 1]
    for gamma in (0.5, 0.8, 0.95):
        best, best_f1 = None, -1.0
        for t in np.round(np.arange(0, 1.0001, 0.02), 2):
            flagged = (score >= t).astype(int)
            if sk.recall_score(y, flagged) >= gamma and sk.f1_score(y, flagged) > best_f1 + 1e-15:
                best, best_f1 = t, sk.f1_score(y, flagged)
        assert recall_constrained_threshold(y, score, gamma) == pytest.approx(best), gamma


def test_recall_constrained_threshold_hand_example():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    score = np.array([0.9, 0.7, 0.5, 0.1, 0.6, 0.3, 0.2, 0.2, 0.1, 0.05])
    # t in (0.5, 0.6]:  flags 0.9 0.7 0.6          TP 2 FP 1 FN 2  recall 0.50  F1 4/7
    # t in (0.3, 0.5]:  flags 0.9 0.7 0.6 0.5      TP 3 FP 1 FN 1  recall 0.75  F1 6/8 (best)
    # t in (0.2, 0.3]:  adds the 0.3 negative      TP 3 FP 2 FN 1  recall 0.75  F1 6/9
    # t in (0.05, 0.1]: everything but 0.05        TP 4 FP 5 FN 0  recall 1.00  F1 8/13
    # Ties in F1 go to the lowest grid threshold: 0.32 for (0.3, 0.5], 0.06 for (0.05, 0.1].
    assert recall_constrained_threshold(y, score, 0.5) == pytest.approx(0.32)
    assert recall_constrained_threshold(y, score, 0.75) == pytest.approx(0.32)
    assert recall_constrained_threshold(y, score, 1.0) == pytest.approx(0.06)


def test_recall_constrained_threshold_refuses_one_class():
    with pytest.raises(BenchboxError, match="only one class"):
        recall_constrained_threshold(np.zeros(5), np.linspace(0, 1, 5), 0.8)
