"""From an ImageSet to training batches: uint8 images stay uint8 until the batch is on its device.

Items are augmented one at a time on uint8 tensors (flips, 90-degree rotations, a small colour
jitter) and normalised per batch, on the device, with the ImageNet statistics every backbone
here was designed for (also when it is trained from scratch, so one input convention holds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, SubsetRandomSampler
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_images(images: np.ndarray) -> np.ndarray:
    """Refuse anything but uint8 N x H x W x 3 (the one image format a method accepts)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 N x H x W x 3, got {images.dtype} {images.shape}")
    return images


def to_chw(images: np.ndarray) -> torch.Tensor:
    """uint8 N x H x W x 3 array -> uint8 N x 3 x H x W tensor (no float copy yet).

    Shares memory with the array when it is writable; a read-only array (a memory-mapped image
    cache) is copied, because torch may not wrap memory it must not write.
    """
    images = np.ascontiguousarray(check_images(images))
    return torch.from_numpy(images if images.flags.writeable else images.copy()).permute(0, 3, 1, 2)


def normalise(batch: torch.Tensor) -> torch.Tensor:
    """uint8 N x 3 x H x W -> float32, scaled to [0, 1], then ImageNet mean/std per channel."""
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    return (batch.float() / 255 - mean) / std


def model_inputs(images: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """uint8 N x H x W x 3 array -> the normalised float N x 3 x H x W tensor a network takes."""
    return normalise(to_chw(images).to(device))


@dataclass(frozen=True)
class Augmentation:
    """Label-preserving changes for dermoscopy: a lesion has no up, no left and no preferred angle.

    Flips and 90-degree rotations are exact (no interpolation); `colour_jitter` is the largest
    relative change of brightness, contrast and saturation (small, because colour is a
    diagnostic cue). Random draws come from torch's global generator, which `seed_everything`
    and the loader's per-worker seeding make reproducible. A mask gets the same geometry.
    """

    flips: bool = True
    rot90: bool = True
    colour_jitter: float = 0.1

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.flips and torch.rand(()) < 0.5:
            image, mask = image.flip(-1), None if mask is None else mask.flip(-1)
        if self.flips and torch.rand(()) < 0.5:
            image, mask = image.flip(-2), None if mask is None else mask.flip(-2)
        if self.rot90 and image.shape[-1] == image.shape[-2]:
            turns = int(torch.randint(0, 4, ()))
            image, mask = image.rot90(turns, (-2, -1)), None if mask is None else mask.rot90(turns, (-2, -1))
        if self.colour_jitter > 0:
            low, high = 1 - self.colour_jitter, 1 + self.colour_jitter
            brightness, contrast, saturation = (torch.empty(3).uniform_(low, high)).tolist()
            image = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(image, brightness), contrast), saturation)
        return image, mask


def augmentation_from_settings(settings: dict) -> Augmentation | None:
    """The card's `augment` switch and `colour_jitter` level (None: no augmentation)."""
    if not settings.get("augment", True):
        return None
    return Augmentation(colour_jitter=float(settings.get("colour_jitter", 0.1)))


class ImageSetDataset(Dataset):
    """Items as dicts: `image` (uint8 3 x H x W, augmented), `target` (int64), `index` and `mask` if any.

    `targets` are whatever the method learns (7-class labels, or `ImageSet.malignant`).
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: np.ndarray,
        masks: np.ndarray | None = None,
        augmentation: Augmentation | None = None,
    ):
        self.images = to_chw(images)
        self.targets = torch.tensor(np.asarray(targets), dtype=torch.long)
        self.masks = None if masks is None else torch.from_numpy(np.asarray(masks, dtype=bool))
        if len(self.targets) != len(self.images) or (self.masks is not None and len(self.masks) != len(self.images)):
            raise ValueError("images, targets and masks must have one row per image")
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.images[index]
        mask = None if self.masks is None else self.masks[index]
        if self.augmentation is not None:
            image, mask = self.augmentation(image, mask)
        item = {"image": image.contiguous(), "target": self.targets[index], "index": torch.tensor(index)}
        if mask is not None:
            item["mask"] = mask.contiguous()
        return item


def train_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    indices: np.ndarray | None = None,
    num_workers: int = 0,
) -> DataLoader:
    """Shuffled batches over `indices` (default: every item once; repeats oversample), seeded.

    The last incomplete batch is dropped when there is more than one batch, because a batch of
    one breaks BatchNorm on 1 x 1 feature maps and a tiny last batch gives a noisy step.
    """
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=SubsetRandomSampler(indices.tolist(), generator=generator),
        drop_last=len(indices) > batch_size,
        num_workers=num_workers,
        generator=generator,
        persistent_workers=num_workers > 0,
    )


def batch_to_device(batch: dict[str, torch.Tensor], device: str | torch.device) -> dict[str, torch.Tensor]:
    """Move a batch to its device and add `inputs`, the normalised float images."""
    moved = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
    moved["inputs"] = normalise(moved["image"])
    return moved
