from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from benchbox.data.arrays import ImageSet
from benchbox.training.sampling import (
    balanced_class_weights,
    duplicate_oversampling,
    oversample_targets,
    synthetic_oversampling,
)


def test_class_weights_match_scikit_learn_and_absent_classes_get_zero():
    targets = np.array([0, 0, 0, 0, 1, 1, 3, 3, 3, 5])
    weights = balanced_class_weights(targets, 7)
    present = np.array([0, 1, 3, 5])
    np.testing.assert_allclose(weights[present], compute_class_weight("balanced", classes=present, y=targets))
    assert weights[[2, 4, 6]].tolist() == [0, 0, 0]


def test_oversample_targets_raise_minorities_to_a_fraction_of_the_largest_class():
    targets = np.array([0] * 10 + [1] * 2 + [2] * 7)  # class 3 absent
    assert oversample_targets(targets, 4, 0.5).tolist() == [10, 5, 7, 0]
    assert oversample_targets(targets, 4, 1.0).tolist() == [10, 10, 10, 0]
    with pytest.raises(ValueError):
        oversample_targets(targets, 4, 0.0)


def test_duplicate_oversampling_keeps_every_image_and_adds_minority_repeats():
    targets = np.array([0] * 10 + [1] * 2 + [2] * 7)
    indices = duplicate_oversampling(targets, 3, 1.0, np.random.default_rng(0))
    assert np.bincount(targets[indices]).tolist() == [10, 10, 10]
    assert set(range(len(targets))) <= set(indices.tolist())
    assert np.array_equal(indices, duplicate_oversampling(targets, 3, 1.0, np.random.default_rng(0)))


def _flat_colour_set() -> ImageSet:
    """Each image is one flat grey level; class 0 has 6 images, class 1 three, class 2 one."""
    levels = np.array([10, 20, 30, 40, 50, 60, 100, 110, 120, 200])
    labels = np.array([0] * 6 + [1] * 3 + [2])
    images = np.repeat(levels, 4 * 4 * 3).reshape(10, 4, 4, 3).astype(np.uint8)
    masks = np.zeros((10, 4, 4), bool)
    masks[:, :2] = True
    return ImageSet(np.array([f"i{i}" for i in range(10)]), images, labels, np.array([f"g{i}" for i in range(10)]), masks)


def test_synthetic_oversampling_mixes_two_images_of_the_same_class():
    data = _flat_colour_set()
    combined, targets = synthetic_oversampling(data, data.labels, 3, 1.0, np.random.default_rng(0), neighbours=2)
    assert np.bincount(targets).tolist() == [6, 6, 6]
    np.testing.assert_array_equal(combined.images[:10], data.images)
    new = slice(10, None)
    assert np.array_equal(combined.labels[new], targets[new])
    flat = combined.images[new].reshape(len(targets) - 10, -1)
    assert (flat == flat[:, :1]).all()  # a mix of flat images is flat
    value = flat[:, 0]
    class1 = targets[new] == 1
    assert ((value[class1] >= 100) & (value[class1] <= 120)).all()  # between class-1 levels, never other classes
    assert (value[~class1] == 200).all()  # a single-image class can only repeat its image
    assert set(combined.groups[new][class1]) <= {"g6", "g7", "g8"} and set(combined.groups[new][~class1]) == {"g9"}
    assert combined.masks.shape == (18, 4, 4) and combined.image_ids[10].startswith("synthetic-")


def test_synthetic_oversampling_is_seeded_and_a_no_op_when_balanced():
    data = _flat_colour_set()
    first, _ = synthetic_oversampling(data, data.labels, 3, 1.0, np.random.default_rng(5))
    second, _ = synthetic_oversampling(data, data.labels, 3, 1.0, np.random.default_rng(5))
    np.testing.assert_array_equal(first.images, second.images)
    same, targets = synthetic_oversampling(data, np.zeros(10, int), 1, 1.0, np.random.default_rng(0))
    assert same is data and len(targets) == 10
