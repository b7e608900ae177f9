from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import jaccard_score

from benchbox.explain.baseline import centred_gaussian_map
from benchbox.explain.localisation import (
    energy_pointing_game,
    iou_at_mask_area,
    iou_at_threshold,
    localisation_scores,
    pointing_game,
)


def disc(size: int, radius: float, centre: tuple[float, float] | None = None) -> np.ndarray:
    cy, cx = centre if centre is not None else ((size - 1) / 2, (size - 1) / 2)
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def blob_masks(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([disc(size, rng.uniform(3, 8), tuple(rng.uniform(6, size - 6, 2))) for _ in range(n)])


def test_the_mask_itself_scores_perfectly():
    masks = blob_masks(5, 32, seed=0)
    scores = localisation_scores(masks.astype(np.float32), masks)
    for name, values in scores.items():
        np.testing.assert_array_equal(values, np.ones(5), err_msg=name)


def test_the_inverted_mask_scores_zero():
    masks = blob_masks(5, 32, seed=1)  # every blob covers far less than half the image
    scores = localisation_scores((~masks).astype(np.float32), masks)
    for name, values in scores.items():
        np.testing.assert_array_equal(values, np.zeros(5), err_msg=name)


def test_an_empty_mask_gives_nan_everywhere_never_a_hit():
    maps = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    masks = np.zeros((2, 8, 8), bool)
    masks[1, 2:5, 2:5] = True
    scores = localisation_scores(maps, masks)
    for name, values in scores.items():
        assert np.isnan(values[0]) and np.isfinite(values[1]), name


def test_centred_gaussian_on_a_centred_disc_matches_a_hand_computation():
    size, sigma, radius = 201, 10.0, 15.0
    gauss = centred_gaussian_map(size, size, sigma_fraction=sigma / size)[None]
    mask = disc(size, radius)[None]
    squared_distance = ((np.mgrid[:size, :size] - 100.0) ** 2).sum(axis=0)
    # Argmax is the centre pixel, which lies in the disc.
    assert pointing_game(gauss, mask)[0] == 1.0
    # A radially decreasing map ranks whole distance shells first: its top-|M| pixels are the disc.
    assert iou_at_mask_area(gauss, mask)[0] == 1.0
    # {map >= 0.5} is the disc of radius sigma * sqrt(2 ln 2) (the min-max offset is e^-100);
    # it lies inside the mask disc, so IoU = lattice points within it / lattice points in the mask.
    half_radius_sq = 2 * sigma**2 * np.log(2)
    expected_iou = (squared_distance <= half_radius_sq).sum() / (squared_distance <= radius**2).sum()
    np.testing.assert_allclose(iou_at_threshold(gauss, mask)[0], expected_iou)
    # Energy: the discrete Gaussian mass in the disc, and its continuous closed form 1 - exp(-R^2 / 2 sigma^2).
    weights = np.exp(-squared_distance / (2 * sigma**2))
    discrete = weights[squared_distance <= radius**2].sum() / weights.sum()
    np.testing.assert_allclose(energy_pointing_game(gauss, mask)[0], discrete, rtol=1e-5)
    np.testing.assert_allclose(energy_pointing_game(gauss, mask)[0], 1 - np.exp(-(radius**2) / (2 * sigma**2)), atol=5e-3)


def test_iou_at_threshold_agrees_with_scikit_learn():
    rng = np.random.default_rng(3)
    maps = rng.random((4, 16, 16)).astype(np.float32)
    masks = blob_masks(4, 16, seed=3)
    expected = [jaccard_score(m.ravel(), (a >= 0.5).ravel()) for a, m in zip(maps, masks)]
    np.testing.assert_allclose(iou_at_threshold(maps, masks), expected)


def test_iou_at_mask_area_breaks_ties_at_random_with_a_seed():
    # A constant map ties every pixel: the top-|M| set is a random |M| pixels, fixed by the seed.
    maps = np.zeros((1, 10, 10), np.float32)
    masks = np.zeros((1, 10, 10), bool)
    masks[0, :5] = True  # half the image
    values = [iou_at_mask_area(maps, masks, seed=s)[0] for s in range(50)]
    assert len(set(values)) > 1 and 0.1 < np.mean(values) < 0.5  # random half vs half: E[IoU] ~ 1/3
    assert iou_at_mask_area(maps, masks, seed=7)[0] == iou_at_mask_area(maps, masks, seed=7)[0]


def test_an_all_zero_map_is_scored_as_uniform():
    masks = blob_masks(3, 16, seed=4)
    maps = np.zeros((3, 16, 16), np.float32)
    np.testing.assert_allclose(energy_pointing_game(maps, masks), masks.mean(axis=(1, 2)))
    np.testing.assert_array_equal(iou_at_threshold(maps, masks), np.zeros(3))


def test_localisation_scores_equal_the_single_metrics():
    rng = np.random.default_rng(5)
    maps = np.round(rng.random((6, 12, 12)), 1).astype(np.float32)  # ties
    masks = blob_masks(6, 12, seed=5)
    scores = localisation_scores(maps, masks, seed=9)
    np.testing.assert_array_equal(scores["iou"], iou_at_threshold(maps, masks))
    np.testing.assert_array_equal(scores["iou_at_mask_area"], iou_at_mask_area(maps, masks, seed=9))
    np.testing.assert_array_equal(scores["pointing_game"], pointing_game(maps, masks, seed=9))
    np.testing.assert_array_equal(scores["energy_pointing_game"], energy_pointing_game(maps, masks))


def test_maps_outside_unit_range_are_rejected():
    with pytest.raises(ValueError, match="normalise"):
        pointing_game(np.full((1, 4, 4), 2.0), np.ones((1, 4, 4), bool))


def test_agrees_with_quantus_where_quantus_is_correct():
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(6)
    n, size = 8, 24
    maps = rng.random((n, size, size)).astype(np.float32)  # continuous: no ties
    masks = blob_masks(n, size, seed=6)  # non-empty
    x = rng.random((n, 3, size, size)).astype(np.float32)
    y = np.zeros(n, dtype=int)
    common = dict(normalise=False, abs=False, disable_warnings=True)
    call = dict(model=None, x_batch=x, y_batch=y, a_batch=maps[:, None], s_batch=masks[:, None].astype(np.float32))

    hits = np.asarray(quantus.PointingGame(**common)(**call), dtype=float)
    np.testing.assert_array_equal(pointing_game(maps, masks), hits)

    mass = np.asarray(quantus.RelevanceMassAccuracy(**common)(**call), dtype=float)
    np.testing.assert_allclose(energy_pointing_game(maps, masks), mass, rtol=1e-5)

    # quantus' top-k intersection is |top-k ∩ M| / k; with k = |M| our IoU is I / (2|M| - I).
    ours = iou_at_mask_area(maps, masks)
    for i in range(n):
        area = int(masks[i].sum())
        one = {**call, "x_batch": x[i : i + 1], "y_batch": y[i : i + 1], "a_batch": call["a_batch"][i : i + 1],
               "s_batch": call["s_batch"][i : i + 1]}  # fmt: skip
        intersection = quantus.TopKIntersection(k=area, **common)(**one)[0] * area
        np.testing.assert_allclose(ours[i], intersection / (2 * area - intersection), rtol=1e-9)
