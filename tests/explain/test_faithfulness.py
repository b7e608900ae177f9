from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import trapezoid

from benchbox.explain.faithfulness import deletion_insertion_auc, trapezoid_auc

SIZE = 32
REGION = (slice(8, 24), slice(8, 24))  # 16 x 16 = 256 of 1024 pixels


class RegionModel:
    """P(class 1) = mean red intensity inside REGION / 255: the output depends on nothing else."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.calls.append(len(images))
        p1 = images[:, REGION[0], REGION[1], 0].mean(axis=(1, 2)) / 255
        return np.column_stack([1 - p1, p1])


def region_images(n: int) -> np.ndarray:
    images = np.zeros((n, SIZE, SIZE, 3), np.uint8)
    images[:, REGION[0], REGION[1]] = 255  # mean colour of each image: 255 * 256 / 1024 = 63.75 -> 64
    return images


def region_map() -> np.ndarray:
    out = np.zeros((SIZE, SIZE), np.float32)
    out[REGION] = 1.0
    return out


def test_trapezoid_matches_scipy():
    curves = np.random.default_rng(0).random((4, 21))
    np.testing.assert_allclose(trapezoid_auc(curves), trapezoid(curves, np.linspace(0, 1, 21), axis=1))


def test_known_curves_for_the_region_map():
    steps = 20
    maps = np.stack([region_map()] * 2)
    result = deletion_insertion_auc(RegionModel(), region_images(2), maps, np.ones(2, int), steps=steps)
    removed = np.round(np.arange(steps + 1) * SIZE * SIZE / steps)
    region_removed = np.minimum(removed, 256) / 256  # the region's pixels go first
    deleted = 1 - region_removed * (1 - 64 / 255)  # a removed pixel takes the mean colour 64
    inserted = 64 / 255 + region_removed * (1 - 64 / 255)
    np.testing.assert_allclose(result["deletion_curve"], np.stack([deleted] * 2))
    np.testing.assert_allclose(result["insertion_curve"], np.stack([inserted] * 2))
    np.testing.assert_allclose(result["deletion_auc"], trapezoid(deleted, dx=1 / steps))
    np.testing.assert_allclose(result["insertion_auc"], trapezoid(inserted, dx=1 / steps))


def test_the_region_map_beats_random_and_inverted_maps():
    images = region_images(3)
    rng = np.random.default_rng(1)
    maps = {
        "region": np.stack([region_map()] * 3),
        "random": rng.random((3, SIZE, SIZE)).astype(np.float32),
        "inverse": np.stack([1 - region_map()] * 3),
    }
    scores = {name: deletion_insertion_auc(RegionModel(), images, m, np.ones(3, int)) for name, m in maps.items()}
    assert (scores["region"]["deletion_auc"] < scores["random"]["deletion_auc"]).all()
    assert (scores["random"]["deletion_auc"] < scores["inverse"]["deletion_auc"]).all()
    assert (scores["region"]["insertion_auc"] > scores["random"]["insertion_auc"]).all()
    assert (scores["random"]["insertion_auc"] > scores["inverse"]["insertion_auc"]).all()


def test_batched_in_few_calls_and_independent_of_batch_size():
    images = region_images(5)
    rng = np.random.default_rng(2)
    maps = rng.integers(0, 3, size=(5, SIZE, SIZE)).astype(np.float32) / 2  # ties: tie-breaking must be shared
    targets = np.array([1, 0, 1, 1, 0])
    big, small = RegionModel(), RegionModel()
    a = deletion_insertion_auc(big, images, maps, targets, steps=10, batch_size=100)  # 20 per image -> 5 per call
    b = deletion_insertion_auc(small, images, maps, targets, steps=10, batch_size=1)  # floor: one image per call
    assert big.calls == [100] and small.calls == [20] * 5
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_tie_breaking_is_seeded():
    images = region_images(1)
    flat = np.zeros((1, SIZE, SIZE), np.float32)  # every pixel tied: the order is pure tie-breaking
    first = deletion_insertion_auc(RegionModel(), images, flat, np.ones(1, int), seed=0)["deletion_auc"]
    again = deletion_insertion_auc(RegionModel(), images, flat, np.ones(1, int), seed=0)["deletion_auc"]
    other = deletion_insertion_auc(RegionModel(), images, flat, np.ones(1, int), seed=1)["deletion_auc"]
    assert first == again and first != other


def test_rejects_mismatched_maps():
    with pytest.raises(ValueError, match="maps"):
        deletion_insertion_auc(RegionModel(), region_images(2), np.zeros((2, 8, 8)), np.ones(2, int))
