"""Card settings -> training objects, so every method reads the same keys the same way.

Keys read here (all optional unless said): `batch_size` (required), `augment` (default true),
`colour_jitter` (0.1), `random_erasing` (0: off), `oversample` ({kind: none|duplicate|synthetic, fraction: 0-1,
neighbours: 5}), `num_workers` (0), and per stage `epochs` (required), `patience`,
`scheduler`, `plateau_factor`, `plateau_patience`, `min_lr`, `min_delta`, `warmup_fraction`.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import DataLoader

from ..data.arrays import ImageSet
from .data import ImageSetDataset, augmentation_from_settings, train_loader
from .loop import StageSettings
from .sampling import duplicate_oversampling, synthetic_oversampling

OVERSAMPLING_KINDS = ("none", "duplicate", "synthetic")
STAGE_KEYS = ("epochs", "patience", "scheduler", "plateau_factor", "plateau_patience", "min_lr", "min_delta", "warmup_fraction")


def stage_settings(settings: dict) -> StageSettings:
    """The StageSettings part of a card's settings (other keys are ignored)."""
    return StageSettings(**{key: settings[key] for key in STAGE_KEYS if key in settings})


def training_batches(data: ImageSet, targets: np.ndarray, n_classes: int, settings: dict, seed: int) -> DataLoader:
    """Augmented, shuffled, seeded training batches with the card's minority oversampling.

    `targets` are what the method learns (labels or `data.malignant`); oversampling balances
    those. Synthetic samples are made once per fit (seeded), not per epoch.
    """
    oversample = dict(settings.get("oversample") or {"kind": "none"})
    kind = oversample.get("kind", "none")
    if kind not in OVERSAMPLING_KINDS:
        raise ValueError(f"oversample kind {kind!r}: choose one of {OVERSAMPLING_KINDS}")
    rng = np.random.default_rng(seed)
    indices = None
    if kind == "synthetic":
        data, targets = synthetic_oversampling(
            data, targets, n_classes, float(oversample["fraction"]), rng, int(oversample.get("neighbours", 5))
        )
    elif kind == "duplicate":
        indices = duplicate_oversampling(targets, n_classes, float(oversample["fraction"]), rng)
    dataset = ImageSetDataset(data.images, targets, data.masks, augmentation_from_settings(settings))
    return train_loader(dataset, int(settings["batch_size"]), seed, indices, int(settings.get("num_workers", 0)))


def limit_images(data: ImageSet, max_images: int | None, seed: int) -> ImageSet:
    """At most `max_images` images, drawn per class in proportion (at least one of each class).

    The smoke profile trains on a few dozen images so that every code path runs in seconds.
    """
    if max_images is None or len(data) <= max_images:
        return data
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(data.labels):
        members = rng.permutation(np.flatnonzero(data.labels == label))
        keep.append(members[: max(1, int(round(max_images * len(members) / len(data))))])
    return data.subset(np.sort(np.concatenate(keep)))
