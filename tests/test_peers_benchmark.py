"""The value-agreement functions of benchmarks/peers.py, on small arrays (fast; no training).

fairlearn and isic-challenge-scoring are only in the `peers` extra, so their tests skip without
them; scikit-learn, Quantus and pytorch-grad-cam are always installed for tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks import peer_explain, peer_values
from benchmarks.peers import predictions


def _small_predictions(n=300, seed=1):
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(7), rng.integers(0, 7, n - 7)])
    logits = rng.normal(size=(n, 7)) + 1.5 * np.eye(7)[y]
    return y, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_compare_checks_the_difference_it_is_told_to():
    assert peer_values.compare("s", "p", "q", [0.5, 0.25], [0.5, 0.25], 1e-12).status == "agrees"
    row = peer_values.compare("s", "p", "q", 0.5, 0.5 + 1e-6, 1e-9)
    assert row.status == "DISAGREES" and row.diff == pytest.approx(1e-6)
    converted = peer_values.compare("s", "p", "q", 0.25, 0.5, 1e-12, "definition differs: half", converted=0.25)
    assert converted.status == "definition differs; checked" and converted.peer_value == 0.5
    recomputed = peer_values.compare("s", "p", "q", 0.1, 0.5, 1e-12, "definition differs: x", peer_definition=0.4)
    assert recomputed.status == "DISAGREES" and recomputed.diff == pytest.approx(0.1)
    assert peer_values.compare("s", "p", "q", [np.nan, 1.0], [np.nan, 1.0], 0.0).agrees  # NaN on both sides


def test_isic_style_partial_auc_by_hand():
    # positives 0.9, 0.4; negatives 0.6, 0.1: ROC (0,.5) (.5,.5) (.5,1) (1,1); TPR 0.8 is reached at FPR 0.5,
    # the raw area from there is 0.5 x 1 = 0.5, and benchbox's normalised area (0.5 - 0.8 x 0.5) / 0.2 = 0.5
    positive = np.array([1, 0, 1, 0])
    score = np.array([0.9, 0.6, 0.4, 0.1])
    raw, fpr0 = peer_values.isic_style_partial_auc(positive, score, 0.8)
    assert (raw, fpr0) == pytest.approx((0.5, 0.5))
    proba = np.column_stack([score, 1 - score])
    assert peer_values.per_class_pauc(1 - positive, proba)[1] == pytest.approx(0.5)


def test_every_sklearn_row_agrees_on_small_predictions():
    y, proba = _small_predictions()
    rows = peer_values.sklearn_rows(y, proba)
    assert len(rows) == 29  # every benchbox metric scikit-learn has (ECE and class-wise ECE: none)
    assert [r.quantity for r in rows if not r.agrees] == []


def test_the_benchmark_predictions_hold_the_official_zero_weight_image():
    image_ids, y, proba, clusters, groups = predictions()
    assert "ISIC_0035068" in set(image_ids) and len(set(groups)) == 6 and len(set(clusters)) == 1300
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_isic_scorer_rows_agree_or_explain():
    pytest.importorskip("isic_challenge_scoring")
    y, proba = _small_predictions(400)
    image_ids = np.array([f"ISIC_{35000 + i:07d}" for i in range(len(y))])  # 35068 is among them
    rows = peer_values.isic_rows(image_ids, y, proba)
    assert [r.quantity for r in rows if not r.agrees] == []
    assert rows[0].note.startswith("definition differs") and rows[0].benchbox != rows[0].peer_value


def test_fairlearn_rows_agree():
    pytest.importorskip("fairlearn")
    from benchbox.metrics.suite import evaluate

    y, proba = _small_predictions(600)
    rng = np.random.default_rng(3)
    groups = np.array(["a", "b", "c"])[rng.integers(0, 3, len(y))]
    clusters = np.arange(len(y)).astype(str)
    subgroup = evaluate("multiclass", y, proba, clusters, {"site": groups}, 0.5, metrics=list(peer_values.SUBGROUP_METRICS))
    rows = peer_values.fairlearn_rows(y, proba, groups, subgroup)
    assert len(rows) == 5 and all(r.agrees for r in rows)


def test_quantus_localisation_rows_agree():
    rng = np.random.default_rng(4)
    maps = rng.random((6, 12, 12)).astype(np.float32)
    yy, xx = np.mgrid[:12, :12]
    masks = np.stack([(yy - 6) ** 2 + (xx - c) ** 2 <= 9 for c in (3, 4, 5, 6, 7, 8)])
    rows = peer_explain.localisation_rows(maps, masks)
    assert len(rows) == 3 and all(r.agrees for r in rows)


def test_mean_colour_replacement_fills_each_channel_with_the_image_mean():
    images = np.zeros((2, 2, 2, 3), np.uint8)
    images[0, ..., 0], images[0, ..., 2] = 10, 200  # image 0: mean colour (10, 0, 200)
    images[1, 0, 0] = 40  # image 1: mean colour (10, 10, 10)
    perturb = peer_explain.mean_colour_replacement(images)
    flat = peer_explain.as_tensor(images).numpy().reshape(2, -1)  # C x H x W order: 4 values per channel
    out = perturb(flat, np.array([[0, 8], [1, 5]]))  # image 0: pixel 0 of R and of B; image 1: G pixel 1
    assert out[0, 0] == 10 and out[0, 8] == 200 and out[1, 1] == 10 and out[1, 5] == 10
    assert (np.delete(out[0], [0, 8]) == np.delete(flat[0], [0, 8])).all()


def _tiny_model():
    torch.manual_seed(0)
    return peer_explain.Normalised(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                                                 nn.Flatten(), nn.Linear(16, 3))).eval()


def test_deletion_curves_agree_with_quantus_pixel_flipping():
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    maps = rng.random((4, 6, 6)).astype(np.float32)  # 36 pixels: 3 steps of 12 (Quantus: 36 features a step)
    model = _tiny_model()
    targets = peer_explain.predict_proba_of(model)(images).argmax(axis=1)
    rows, seconds = peer_explain.faithfulness_rows(model, images, maps, targets, steps=3)
    assert all(r.agrees for r in rows) and len(seconds) == 2
    assert rows[1].note.startswith("definition differs")


def test_road_agrees_with_pytorch_grad_cam_without_noise():
    from benchbox.explain.road import road_scores

    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, (3, 10, 10, 3), dtype=np.uint8)
    maps = rng.random((3, 10, 10)).astype(np.float32)
    model = _tiny_model()
    targets = np.array([0, 1, 2])
    fractions = (0.2, 0.5, 0.8)
    ours = road_scores(peer_explain.predict_proba_of(model), images, maps, targets, fractions, max_images=None,
                       noise_std=0.0)
    morf, lerf = peer_explain.gradcam_road(model, images, maps, targets, fractions, noise=0.0)
    np.testing.assert_allclose(ours["road_morf"], morf, atol=5e-3)
    np.testing.assert_allclose(ours["road_lerf"], lerf, atol=5e-3)
