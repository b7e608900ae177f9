"""Deletion and insertion AUC (Petsiuk et al. 2018): does removing what the map ranks first hurt the model?

Model-agnostic: the model is any `predict_proba(uint8 N x H x W x 3) -> N x C` callable.
Pixels are ranked by the map with random tie-breaking. A removed pixel takes the image's
mean colour (one baseline for both curves, no blur scale to choose): deletion starts from
the image and replaces the top-ranked pixels step by step; insertion starts from the
mean-colour image and restores them. The score is the target class's probability, and the
AUC is the trapezoid over the removed fraction in [0, 1], so it lies in [0, 1]. Lower
deletion AUC and higher insertion AUC mean a more faithful map.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from tqdm import tqdm

from .maps import pixel_ranks

PredictProba = Callable[[np.ndarray], np.ndarray]


def trapezoid_auc(curves: np.ndarray) -> np.ndarray:
    """Area under each row of `curves`, sampled at evenly spaced x from 0 to 1 (trapezoid rule)."""
    curves = np.asarray(curves, dtype=np.float64)
    if curves.shape[-1] < 2:
        raise ValueError("a curve needs at least two points")
    return ((curves[..., 1:] + curves[..., :-1]) / 2).mean(axis=-1)


def check_inputs(images: np.ndarray, maps: np.ndarray, targets: np.ndarray) -> None:
    """Shapes and types every model-facing faithfulness metric needs."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 N x H x W x 3, got {images.dtype} {images.shape}")
    if maps.shape != images.shape[:3] or len(targets) != len(images):
        raise ValueError(f"maps {maps.shape} and targets {np.shape(targets)} do not match images {images.shape}")


def target_probabilities(predict_proba: PredictProba, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """predict_proba on a batch, keeping only each row's target-class probability."""
    probs = np.asarray(predict_proba(images))
    if probs.ndim != 2 or len(probs) != len(images) or targets.max(initial=0) >= probs.shape[1]:
        raise ValueError(
            f"predict_proba returned shape {probs.shape} for {len(images)} images with targets up to {targets.max()}"
        )
    return probs[np.arange(len(images)), targets]


def deletion_insertion_auc(
    predict_proba: PredictProba,
    images: np.ndarray,
    maps: np.ndarray,
    targets: np.ndarray,
    steps: int = 20,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Per-image deletion and insertion AUC and their curves (N x steps+1), batched.

    Each image needs 2 x `steps` predictions (the intact and the mean-colour images are
    shared by both curves); whole images' worth of them go into one `predict_proba` call of
    at most `batch_size` images (at least one image's worth), which bounds memory.
    """
    images, maps, targets = np.asarray(images), np.asarray(maps), np.asarray(targets, dtype=np.int64)
    check_inputs(images, maps, targets)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    n, height, width, _ = images.shape
    ranks = pixel_ranks(maps, np.random.default_rng(seed)).reshape(n, height, width)
    removed_counts = np.round(np.arange(1, steps) * height * width / steps).astype(np.int64)  # interior steps
    deletion = np.empty((n, steps + 1))
    insertion = np.empty((n, steps + 1))
    per_call = max(1, batch_size // (2 * steps))
    for start in tqdm(range(0, n, per_call), desc="deletion/insertion", disable=not progress):
        stop = min(start + per_call, n)
        image = images[start:stop, None]  # c x 1 x H x W x 3
        mean_colour = images[start:stop].mean(axis=(1, 2)).round().astype(np.uint8)
        baseline = np.broadcast_to(mean_colour[:, None, None, None], image.shape)
        removed = (ranks[start:stop, None] < removed_counts[None, :, None, None])[..., None]  # c x steps-1 x H x W x 1
        batch = np.concatenate(
            [image, baseline, np.where(removed, baseline, image), np.where(removed, image, baseline)], axis=1
        )
        chunk_targets = np.repeat(targets[start:stop], batch.shape[1])
        probs = target_probabilities(predict_proba, batch.reshape(-1, height, width, 3), chunk_targets)
        probs = probs.reshape(stop - start, -1)
        intact, empty, deleted, inserted = probs[:, 0], probs[:, 1], probs[:, 2 : steps + 1], probs[:, steps + 1 :]
        deletion[start:stop] = np.column_stack([intact, deleted, empty])
        insertion[start:stop] = np.column_stack([empty, inserted, intact])
    return {
        "deletion_auc": trapezoid_auc(deletion),
        "insertion_auc": trapezoid_auc(insertion),
        "deletion_curve": deletion,
        "insertion_curve": insertion,
    }
