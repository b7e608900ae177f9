"""The plain in-memory data a method sees: decoded images at the method's input size plus labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..labels import MALIGNANT_INDICES


@dataclass
class ImageSet:
    """Images of one split, already decoded and resized (uint8, N x H x W x 3).

    `labels` index into `benchbox.labels.CLASSES`; `groups` are the split's leak-free
    group ids (use them for any inner cross-validation); `masks` are boolean lesion
    masks (N x H x W) or None when the dataset has none.
    """

    image_ids: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    masks: np.ndarray | None = None
    ita: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.image_ids)
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 N x H x W x 3, got {self.images.dtype} {self.images.shape}")
        for name in ("images", "labels", "groups"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, image_ids has {n}")
        if self.masks is not None and self.masks.shape != self.images.shape[:3]:
            raise ValueError(f"masks shape {self.masks.shape} does not match images {self.images.shape[:3]}")

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def malignant(self) -> np.ndarray:
        """1 for mel, bcc, akiec; 0 otherwise."""
        return np.isin(self.labels, MALIGNANT_INDICES).astype(np.int64)

    def subset(self, index: np.ndarray) -> "ImageSet":
        return ImageSet(
            image_ids=self.image_ids[index],
            images=self.images[index],
            labels=self.labels[index],
            groups=self.groups[index],
            masks=None if self.masks is None else self.masks[index],
            ita=None if self.ita is None else self.ita[index],
        )
