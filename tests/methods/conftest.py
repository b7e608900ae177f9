"""Tiny image sets for method tests: random images whose mean colour depends on the class."""

from __future__ import annotations

import numpy as np
import pytest

from benchbox.data.arrays import ImageSet


def tiny_image_set(n: int = 40, size: int = 48, seed: int = 0, masks: bool = False) -> ImageSet:
    """n images (classes 0..6 in turn), noise around a class-dependent colour, a disc mask each."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 7
    base = np.stack([labels * 30 + 40, 200 - labels * 20, (labels * 70) % 255], axis=1)[:, None, None, :]
    images = np.clip(base + rng.normal(0, 40, (n, size, size, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    return ImageSet(
        image_ids=np.array([f"IMG_{seed}_{i}" for i in range(n)]),
        images=images,
        labels=labels,
        groups=np.array([f"G_{seed}_{i // 2}" for i in range(n)]),
        masks=np.repeat(disc[None], n, axis=0) if masks else None,
    )


@pytest.fixture(scope="session")
def tiny_sets():
    """(train, val, test) ImageSets of 48 px: 40, 14 and 10 images."""
    return tiny_image_set(40, seed=0), tiny_image_set(14, seed=1), tiny_image_set(10, seed=2)


@pytest.fixture(scope="session")
def make_image_set():
    """The `tiny_image_set` factory, for tests that need other sizes or masks."""
    return tiny_image_set
