"""Calibration: ECE on a hand-worked example, class-wise ECE by its definition, Brier and NLL against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from benchbox.metrics import evaluate
from benchbox.metrics.bootstrap import draw_resamples
from benchbox.metrics.calibration import calibration_replicates, confidence_bin

HAND_PROBA = np.array(
    [
        [0.90, 0.05, 0.05],  # label 0: confidence 0.90, bin 13, correct
        [0.80, 0.10, 0.10],  # label 1: 0.80, bin 12, wrong
        [0.20, 0.70, 0.10],  # label 1: 0.70, bin 10, correct
        [0.30, 0.30, 0.40],  # label 0: 0.40, bin 6, wrong
        [1.00, 0.00, 0.00],  # label 1: 1.00, last bin (14), wrong
        [0.05, 0.90, 0.05],  # label 1: 0.90, bin 13, correct
        [0.02, 0.03, 0.95],  # label 2: 0.95, bin 14, correct
    ]
)
HAND_LABELS = np.array([0, 1, 1, 0, 1, 1, 2])


def point(values):
    return {name: value[0, 0] for name, value in values.items()}


def test_ece_hand_worked():
    # bin 13: |2 - 1.8| = 0.2; bin 12: |0 - 0.8|; bin 10: |1 - 0.7|; bin 6: |0 - 0.4|;
    # bin 14: |1 - (1.0 + 0.95)| = 0.95 (1.0 shares the last bin; alone it would give 1 + 0.05)
    resamples = draw_resamples(np.arange(7), 0, 0)
    values = point(calibration_replicates(resamples, HAND_LABELS, HAND_PROBA, np.zeros(7, dtype=int), 1))
    assert values["ece"] == pytest.approx((0.2 + 0.8 + 0.3 + 0.4 + 0.95) / 7, abs=1e-12)


def test_confidence_bins_are_fifteen_equal_width_with_one_in_the_last():
    assert confidence_bin(np.array([0.0, 0.06, 1 / 15 + 1e-9, 0.5, 14 / 15 + 1e-9, 0.999, 1.0])).tolist() == [
        0, 0, 1, 7, 14, 14, 14
    ]


def classwise_ece_by_definition(y, proba, n_bins=15):
    total = 0.0
    for k in range(proba.shape[1]):
        bins = np.minimum((proba[:, k] * n_bins).astype(int), n_bins - 1)
        for b in np.unique(bins):
            inside = bins == b
            total += inside.sum() / len(y) * abs((y[inside] == k).mean() - proba[inside, k].mean())
    return total / proba.shape[1]


def test_classwise_ece_brier_nll(random_multiclass, make_config):
    for seed in (0, 1, 2):
        y, proba, lesions = random_multiclass(seed)
        result = evaluate("multiclass", y, proba, lesions, config=make_config(0))
        labels = list(range(7))
        assert result["ece_classwise"]["value"] == pytest.approx(classwise_ece_by_definition(y, proba), abs=1e-12)
        assert result["brier"]["value"] == pytest.approx(sk.brier_score_loss(y, proba, labels=labels), abs=1e-9)
        assert result["nll"]["value"] == pytest.approx(sk.log_loss(y, proba, labels=labels), abs=1e-9)


def test_nll_clips_a_zero_probability_like_sklearn(make_config):
    proba = np.array([[1.0, 0.0], [0.2, 0.8], [0.0, 1.0], [0.6, 0.4]])
    y = np.array([1, 1, 1, 0])
    result = evaluate("binary", y, proba, np.arange(4), config=make_config(0))
    assert result["binary.nll"]["value"] == pytest.approx(sk.log_loss(y, proba[:, 1]), abs=1e-9)


def test_binary_ece_by_definition(make_config):
    rng = np.random.default_rng(3)
    score = rng.random(500)
    y = (rng.random(500) < score**1.5).astype(int)
    result = evaluate("binary", y, np.c_[1 - score, score], np.arange(500), config=make_config(0))
    confidence = np.maximum(score, 1 - score)
    correct = (score > 0.5) == (y == 1)
    bins = np.minimum((confidence * 15).astype(int), 14)
    expected = sum(
        (bins == b).mean() * abs(correct[bins == b].mean() - confidence[bins == b].mean()) for b in np.unique(bins)
    )
    assert result["binary.ece"]["value"] == pytest.approx(expected, abs=1e-12)
