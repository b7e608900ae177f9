from __future__ import annotations

import numpy as np
import pytest

from benchbox.explain.road import noisy_linear_impute, road_scores

SIZE = 24
REGION = (slice(6, 18), slice(6, 18))


def test_a_single_interior_pixel_becomes_the_weighted_mean_of_its_neighbours():
    image = np.zeros((3, 3, 3), np.uint8)
    image[..., 0] = [[12, 60, 24], [120, 0, 180], [36, 240, 48]]
    image[..., 1] = 100
    removed = np.zeros((3, 3), bool)
    removed[1, 1] = True
    out = noisy_linear_impute(image, removed, noise_std=0.0, rng=np.random.default_rng(0))
    direct, diagonal = 60 + 120 + 180 + 240, 12 + 24 + 36 + 48
    assert out[1, 1, 0] == round(direct / 6 + diagonal / 12)  # 100 + 10 = 110
    assert out[1, 1, 1] == 100 and out[1, 1, 2] == 0
    removed_elsewhere = ~removed
    np.testing.assert_array_equal(out[removed_elsewhere], image[removed_elsewhere])


def test_a_corner_pixel_renormalises_over_its_three_neighbours():
    image = np.zeros((2, 2, 3), np.uint8)
    image[..., 2] = [[0, 30], [90, 150]]
    removed = np.array([[True, False], [False, False]])
    out = noisy_linear_impute(image, removed, noise_std=0.0, rng=np.random.default_rng(0))
    assert out[0, 0, 2] == round((30 / 6 + 90 / 6 + 150 / 12) / (5 / 12))  # = 78


def test_a_linear_ramp_is_reproduced_exactly_inside_the_image():
    # A linear function equals its symmetric weighted neighbour mean, so it solves the system.
    ramp = (np.arange(20)[None, :] * 10 + np.arange(20)[:, None] * 3).astype(np.uint8)
    image = np.stack([ramp, 255 - ramp, np.full_like(ramp, 7)], axis=-1)
    removed = np.zeros((20, 20), bool)
    removed[4:15, 3:12] = True
    removed[8, 15:18] = True
    out = noisy_linear_impute(image, removed, noise_std=0.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, image)


def test_noise_has_the_requested_spread_and_spares_kept_pixels():
    image = np.full((40, 40, 3), 100, np.uint8)
    removed = np.zeros((40, 40), bool)
    removed[5:35, 5:35] = True
    out = noisy_linear_impute(image, removed, noise_std=5.0, rng=np.random.default_rng(0)).astype(float)
    assert abs(out[removed].std() - np.sqrt(25 + 1 / 12)) < 0.3  # + rounding variance; 2700 draws: SE ~0.07
    assert abs(out[removed].mean() - 100) < 0.4  # SE ~0.1
    np.testing.assert_array_equal(out[~removed], 100)


def test_removing_every_pixel_is_refused():
    with pytest.raises(ValueError, match="kept pixel"):
        noisy_linear_impute(np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), bool), 0.0, np.random.default_rng(0))


def region_model(images: np.ndarray) -> np.ndarray:
    p1 = images[:, REGION[0], REGION[1], 1].mean(axis=(1, 2)) / 255
    return np.column_stack([1 - p1, p1])


def test_road_ranks_the_faithful_map_first_on_rgb_images():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 60, size=(5, SIZE, SIZE, 3)).astype(np.uint8)
    images[:, REGION[0], REGION[1], 1] = 250  # the evidence: green inside the region
    good = np.zeros((5, SIZE, SIZE), np.float32)
    good[:, REGION[0], REGION[1]] = 1
    targets = np.ones(5, int)
    faithful = road_scores(region_model, images, good, targets, max_images=3, seed=0, batch_size=10)
    inverted = road_scores(region_model, images, 1 - good, targets, max_images=3, seed=0)
    assert np.array_equal(faithful["index"], inverted["index"]) and len(faithful["index"]) == 3
    assert np.all(np.diff(faithful["index"]) > 0)
    assert (faithful["road_morf"] < inverted["road_morf"]).all()
    assert (faithful["road_lerf"] > inverted["road_lerf"]).all()
    # LeRF with the faithful map keeps the region intact up to 75 % removed (region = 1/4 of the image).
    np.testing.assert_allclose(faithful["lerf_curve"][:, :7], 250 / 255)
    assert faithful["morf_curve"].shape == (3, 9)


def test_road_is_seeded_and_scores_every_image_when_asked():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(4, 12, 12, 3)).astype(np.uint8)
    maps = rng.random((4, 12, 12)).astype(np.float32)
    a = road_scores(region_model_small, images, maps, np.ones(4, int), max_images=None, fractions=(0.2, 0.5), seed=1)
    b = road_scores(region_model_small, images, maps, np.ones(4, int), max_images=None, fractions=(0.2, 0.5), seed=1)
    assert np.array_equal(a["index"], np.arange(4))
    np.testing.assert_array_equal(a["road_morf"], b["road_morf"])


def region_model_small(images: np.ndarray) -> np.ndarray:
    p1 = images[:, 3:9, 3:9].mean(axis=(1, 2, 3)) / 255
    return np.column_stack([1 - p1, p1])
