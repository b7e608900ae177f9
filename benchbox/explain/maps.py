"""Operations shared by every explainer and metric on N x H x W saliency maps."""

from __future__ import annotations

import numpy as np


def normalise_maps(maps: np.ndarray) -> np.ndarray:
    """Min-max scale each map on its own to [0, 1] (never across the batch); a constant map -> zeros."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise ValueError(f"maps must be N x H x W, got shape {maps.shape}")
    if not np.isfinite(maps).all():
        raise ValueError("maps contain NaN or infinite values; the explainer is broken")
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    safe_span = np.where(span > 0, span, 1.0).astype(np.float32)
    return np.where(span > 0, (maps - low) / safe_span, 0.0).astype(np.float32)


def keep_top_fraction(maps: np.ndarray, fraction: float) -> np.ndarray:
    """Keep each map's top `fraction` of pixels by value, zero the rest, rescale to [0, 1].

    This is the recall-ensemble paper's "sharpened to the top 25%". The cut is the value of
    the ceil(fraction * H * W)-th largest pixel; pixels tied with it are kept too (so a map
    with many equal values may keep more than the fraction). Kept pixels keep their relative
    values: the result is the zeroed map divided by its maximum.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    maps = normalise_maps(maps)
    flat = maps.reshape(len(maps), -1)
    k = int(np.ceil(fraction * flat.shape[1]))
    cut = np.partition(flat, flat.shape[1] - k, axis=1)[:, flat.shape[1] - k]
    kept = np.where(maps >= cut[:, None, None], maps, 0.0)
    return normalise_maps(kept)


def pixel_ranks(maps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of every pixel by relevance (0 = most relevant), N x (H*W), ties broken at random.

    Random tie-breaking matters: sharpened or coarse CAM maps have large plateaus (often of
    zeros), and a deterministic order would remove them in raster order. One uint64 sort key
    per pixel: the map value's float32 bit pattern (monotonic for non-negative floats) in the
    high 32 bits, a random number in the low 32 bits.
    """
    values = np.asarray(maps, dtype=np.float32).reshape(len(maps), -1) + np.float32(0.0)  # -0.0 -> +0.0
    if (values < 0).any():
        raise ValueError("maps must be non-negative to be ranked")
    key = values.view(np.uint32).astype(np.uint64) << np.uint64(32)
    key |= rng.integers(0, 2**32, size=values.shape, dtype=np.uint64)
    order = np.argsort(~key, axis=1)  # ~key: descending
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(values.shape[1]), values.shape), axis=1)
    return ranks
