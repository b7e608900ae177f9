from __future__ import annotations

import numpy as np

from benchbox.data.arrays import ImageSet
from benchbox.training.recipes import limit_images, stage_settings, training_batches


def _set(labels) -> ImageSet:
    labels = np.asarray(labels)
    n = len(labels)
    images = np.random.default_rng(0).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    return ImageSet(np.array([f"i{i}" for i in range(n)]), images, labels, np.arange(n))


def test_limit_images_keeps_class_proportions_and_every_class():
    data = _set([0] * 80 + [1] * 15 + [2] * 5)
    small = limit_images(data, 20, seed=0)
    assert np.bincount(small.labels).tolist() == [16, 3, 1]
    assert limit_images(data, None, seed=0) is data and limit_images(data, 500, seed=0) is data


def test_training_batches_apply_the_cards_oversampling():
    data = _set([0] * 12 + [1] * 3)
    settings = {"batch_size": 100, "oversample": {"kind": "duplicate", "fraction": 1.0}, "augment": False}
    (batch,) = list(training_batches(data, data.labels, 2, settings, seed=0))
    assert np.bincount(batch["target"].numpy()).tolist() == [12, 12]
    settings["oversample"] = {"kind": "synthetic", "fraction": 0.5}
    (batch,) = list(training_batches(data, data.labels, 2, settings, seed=0))
    assert np.bincount(batch["target"].numpy()).tolist() == [12, 6]


def test_stage_settings_pick_the_stage_keys():
    stage = stage_settings({"epochs": 4, "patience": 2, "scheduler": "cosine", "lr": 0.1, "unfreeze_fraction": 0.4})
    assert (stage.epochs, stage.patience, stage.scheduler) == (4, 2, "cosine")
