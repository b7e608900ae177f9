"""From an ImageSet to training batches: uint8 images stay uint8 until the batch is on its device.

Items are augmented one at a time on uint8 tensors (flips, 90-degree rotations, a small colour
jitter, optionally random erasing) and normalised per batch, on the device, with the ImageNet statistics every backbone
here was designed for (also when it is trained from scratch, so one input convention holds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, SubsetRandomSampler, get_worker_info
from torchvision.transforms import RandomErasing
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
    # probability of erasing one rectangle (torchvision RandomErasing's scale and ratio), filled with the
    # ImageNet mean colour, i.e. 0 after normalisation as in the usual Normalize -> RandomErasing pipeline
    random_erasing: float = 0.0

    def draw(self, height: int, width: int) -> tuple[bool, bool, int | None, list[float] | None, tuple[int, ...] | None]:
        """One item's random choices (horizontal flip, vertical flip, quarter turns, jitter factors,
        erased rectangle top, left, height, width).

        All of an item's draws happen here, in a fixed order, from torch's generator alone, so a resumed
        data-loader worker can replay the draws of the items it made before the interruption.
        """
        hflip = bool(self.flips and torch.rand(()) < 0.5)
        vflip = bool(self.flips and torch.rand(()) < 0.5)
        turns = int(torch.randint(0, 4, ())) if self.rot90 and height == width else None
        jitter = None
        if self.colour_jitter > 0:
            jitter = torch.empty(3).uniform_(1 - self.colour_jitter, 1 + self.colour_jitter).tolist()
        erase = None
        if self.random_erasing > 0 and torch.rand(()) < self.random_erasing:
            top, left, tall, wide, _ = RandomErasing.get_params(
                torch.empty(3, height, width), scale=(0.02, 0.33), ratio=(0.3, 3.3), value=[0])
            erase = None if (tall, wide) == (height, width) else (top, left, tall, wide)  # no fit in 10 tries
        return hflip, vflip, turns, jitter, erase

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        hflip, vflip, turns, jitter, erase = self.draw(image.shape[-2], image.shape[-1])
        if hflip:
            image, mask = image.flip(-1), None if mask is None else mask.flip(-1)
        if vflip:
            image, mask = image.flip(-2), None if mask is None else mask.flip(-2)
        if turns is not None:
            image, mask = image.rot90(turns, (-2, -1)), None if mask is None else mask.rot90(turns, (-2, -1))
        if jitter is not None:
            brightness, contrast, saturation = jitter
            image = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(image, brightness), contrast), saturation)
        if erase is not None:  # the image only: the lesion is still there, just hidden (as under a marker)
            top, left, tall, wide = erase
            image = image.clone()
            image[:, top:top + tall, left:left + wide] = torch.tensor(
                [round(255 * m) for m in IMAGENET_MEAN], dtype=image.dtype).view(3, 1, 1)
        return image, mask


def augmentation_from_settings(settings: dict) -> Augmentation | None:
    """The card's `augment` switch, `colour_jitter` level and `random_erasing` probability (None: no augmentation)."""
    if not settings.get("augment", True):
        return None
    return Augmentation(colour_jitter=float(settings.get("colour_jitter", 0.1)),
                        random_erasing=float(settings.get("random_erasing", 0.0)))


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

    def replay_draws(self, items: int) -> None:
        """Make the random draws of `items` items without making them (a resumed worker catching up)."""
        if self.augmentation is not None:
            for _ in range(items):
                self.augmentation.draw(self.images.shape[-2], self.images.shape[-1])


class ResumableSubsetSampler(SubsetRandomSampler):
    """torch's SubsetRandomSampler (the same draws) that counts its epochs and can start at a saved position.

    `resume_at(state)` makes the next epoch draw its permutation from `state` (a generator state
    saved at an epoch end). It is applied when the epoch's first index is asked for, which is
    after the loader drew its workers' base seed, so that seed can come from the start state.
    """

    def __init__(self, indices: list[int], generator: torch.Generator) -> None:
        super().__init__(indices, generator=generator)
        self.initial_state = generator.get_state()  # before any draw: where the workers' base seed comes from
        self.epochs_started = 0
        self._start_state: torch.Tensor | None = None

    def resume_at(self, state: torch.Tensor) -> None:
        self._start_state = state

    def __iter__(self):
        if self._start_state is not None:
            self.generator.set_state(self._start_state)
            self._start_state = None
        self.epochs_started += 1
        yield from super().__iter__()


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
        sampler=ResumableSubsetSampler(indices.tolist(), generator),
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


def loader_state(loader: DataLoader) -> dict[str, Any]:
    """Where a loader stands at an epoch end: its generator state and, for `train_loader`'s, its epoch count.

    Shuffling (and the workers' base seed) come from the loader's generator; augmentation in
    the main process comes from torch's global generator, which the caller saves.
    """
    state: dict[str, Any] = {"generator": None if loader.generator is None else loader.generator.get_state()}
    if isinstance(loader.sampler, ResumableSubsetSampler):
        state["epochs_started"] = loader.sampler.epochs_started
    return state


def restore_loader(loader: DataLoader, state: dict[str, Any]) -> str | None:
    """Put a loader back where `loader_state` found it; returns why that is not exact, or None.

    Persistent workers keep their torch generators from epoch to epoch, and a resumed fit
    starts new ones: they get the original base seed (drawn from the sampler's initial state)
    and replay the augmentation draws of every item they made before, so each continues where
    the interrupted worker stood. That needs `train_loader`'s sampler and an `ImageSetDataset`.
    """
    if (state["generator"] is None) != (loader.generator is None):
        return "the saved loader and this one differ in having a generator"
    sampler = loader.sampler
    if not (loader.num_workers > 0 and loader.persistent_workers):
        if loader.generator is not None:
            loader.generator.set_state(state["generator"])
        if isinstance(sampler, ResumableSubsetSampler):
            sampler.epochs_started = int(state.get("epochs_started", 0))
        return None
    if loader.generator is None or not isinstance(sampler, ResumableSubsetSampler) or not hasattr(loader.dataset, "replay_draws"):
        if loader.generator is not None:
            loader.generator.set_state(state["generator"])
        return "its persistent workers' augmentation draws cannot be replayed (not a train_loader over an ImageSetDataset)"
    if getattr(loader, "_iterator", None) is not None:
        return "its workers were already running"
    epochs = int(state.get("epochs_started", 0))
    loader.generator.set_state(sampler.initial_state)
    sampler.resume_at(state["generator"])
    sampler.epochs_started = epochs
    sizes = [loader.batch_size] * (len(sampler) // loader.batch_size)
    if not loader.drop_last and len(sampler) % loader.batch_size:
        sizes.append(len(sampler) % loader.batch_size)
    workers = loader.num_workers  # batches go to the workers in turn, starting at worker 0 every epoch
    then = loader.worker_init_fn
    if isinstance(then, WorkerCatchUp):  # restored before (a finished stage, then the one in progress): the last one holds
        then = then.then
    loader.worker_init_fn = WorkerCatchUp([epochs * sum(sizes[w::workers]) for w in range(workers)], then)
    return None


class WorkerCatchUp:
    """A worker_init_fn that replays the augmentation draws of the items a worker made before a resume."""

    def __init__(self, items: list[int], then: Callable[[int], None] | None = None) -> None:
        self.items = items
        self.then = then

    def __call__(self, worker_id: int) -> None:
        if self.then is not None:
            self.then(worker_id)
        get_worker_info().dataset.replay_draws(self.items[worker_id])
