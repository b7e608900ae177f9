"""Dice and IoU per image against scikit-learn, empty masks, and the clustered mean."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from benchbox.errors import BenchboxError
from benchbox.metrics import dice_iou, evaluate_segmentation


def random_masks(seed, n=12, size=16):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centres = rng.uniform(4, 12, (n, 2, 2))
    radii = rng.uniform(2, 6, (n, 2))
    truth = np.stack([(yy - c[0, 0]) ** 2 + (xx - c[0, 1]) ** 2 < r[0] ** 2 for c, r in zip(centres, radii)])
    predicted = np.stack([(yy - c[1, 0]) ** 2 + (xx - c[1, 1]) ** 2 < r[1] ** 2 for c, r in zip(centres, radii)])
    return predicted, truth


def test_dice_and_iou_match_sklearn_per_image():
    predicted, truth = random_masks(0)
    dice, iou = dice_iou(predicted, truth)
    for i in range(len(truth)):
        assert dice[i] == pytest.approx(sk.f1_score(truth[i].ravel(), predicted[i].ravel()), abs=1e-12)
        assert iou[i] == pytest.approx(sk.jaccard_score(truth[i].ravel(), predicted[i].ravel()), abs=1e-12)


def test_two_empty_masks_are_undefined_and_one_empty_mask_scores_zero():
    empty = np.zeros((1, 8, 8), dtype=bool)
    full = np.ones((1, 8, 8), dtype=bool)
    dice, iou = dice_iou(np.concatenate([empty, empty]), np.concatenate([empty, full]))
    assert np.isnan(dice[0]) and np.isnan(iou[0])
    assert dice[1] == 0.0 and iou[1] == 0.0


def test_clustered_mean_skips_undefined_images(make_config):
    predicted, truth = random_masks(1, n=40)
    predicted[:3] = truth[:3] = False  # nothing to segment in three images
    result = evaluate_segmentation(predicted, truth, np.arange(40) // 2, make_config(300))
    dice, iou = dice_iou(predicted, truth)
    assert result["segmentation.dice"]["value"] == pytest.approx(np.nanmean(dice), abs=1e-12)
    assert result["segmentation.iou"]["value"] == pytest.approx(np.nanmean(iou), abs=1e-12)
    assert result["segmentation.dice"]["n"] == 37
    assert result["segmentation.dice"]["higher_is_better"] is True
    dice_entry = result["segmentation.dice"]
    assert dice_entry["ci_low"] < dice_entry["value"] < dice_entry["ci_high"]


def test_mask_shapes_must_agree():
    with pytest.raises(BenchboxError, match="differ in shape"):
        dice_iou(np.zeros((2, 8, 8), bool), np.zeros((2, 16, 16), bool))
