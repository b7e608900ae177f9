"""How well saliency maps point at the lesion: maps (N x H x W in [0, 1]) vs ground-truth masks.

Every score is NaN for an empty mask (there is nothing to point at; quantus' PointingGame
returns True there). A map with no mass at all (all zeros) says nothing, so it is scored as
the uniform map it is equivalent to: its argmax is a random pixel and its energy spreads
evenly.
"""

from __future__ import annotations

import numpy as np

from .maps import pixel_ranks


def _check(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    maps = np.asarray(maps, dtype=np.float32)
    masks = np.asarray(masks, dtype=bool)
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} must both be N x H x W")
    if not np.isfinite(maps).all() or maps.min(initial=0) < 0 or maps.max(initial=0) > 1:
        raise ValueError("maps must be finite and in [0, 1]; normalise them first")
    return maps.reshape(len(maps), -1), masks.reshape(len(masks), -1)


def _nan_where_empty(scores: np.ndarray, masks: np.ndarray) -> np.ndarray:
    return np.where(masks.any(axis=1), scores, np.nan)


def _iou(selected: np.ndarray, masks: np.ndarray) -> np.ndarray:
    intersection = (selected & masks).sum(axis=1)
    union = (selected | masks).sum(axis=1)
    return _nan_where_empty(intersection / np.maximum(union, 1), masks)


def iou_at_threshold(maps: np.ndarray, masks: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """IoU between {map >= threshold} and the mask, per image."""
    maps, masks = _check(maps, masks)
    return _iou(maps >= threshold, masks)


def _top_mask_area_iou(ranks: np.ndarray, masks: np.ndarray) -> np.ndarray:
    return _iou(ranks < masks.sum(axis=1, keepdims=True), masks)


def iou_at_mask_area(maps: np.ndarray, masks: np.ndarray, seed: int = 0) -> np.ndarray:
    """IoU between the map's top-|M| pixels (|M| = mask area, ties broken at random) and the mask.

    Free of any threshold choice: it asks whether the map ranks the lesion's pixels first.
    """
    maps, masks = _check(maps, masks)
    return _top_mask_area_iou(pixel_ranks(maps, np.random.default_rng(seed)), masks)


def _pointing(ranks: np.ndarray, masks: np.ndarray) -> np.ndarray:
    return _nan_where_empty((masks & (ranks == 0)).any(axis=1).astype(np.float64), masks)


def pointing_game(maps: np.ndarray, masks: np.ndarray, seed: int = 0) -> np.ndarray:
    """1.0 if the map's maximum (one pixel, ties broken at random) lies in the mask, else 0.0."""
    maps, masks = _check(maps, masks)
    return _pointing(pixel_ranks(maps, np.random.default_rng(seed)), masks)


def energy_pointing_game(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Fraction of the map's total mass that falls inside the mask (Wang et al. 2020, Score-CAM)."""
    maps, masks = _check(maps, masks)
    total = maps.sum(axis=1, dtype=np.float64)
    inside = np.where(masks, maps, 0).sum(axis=1, dtype=np.float64)
    uniform = masks.mean(axis=1)
    return _nan_where_empty(np.where(total > 0, inside / np.where(total > 0, total, 1), uniform), masks)


LOCALISATION_METRICS = ("iou", "iou_at_mask_area", "pointing_game", "energy_pointing_game")


def localisation_scores(maps: np.ndarray, masks: np.ndarray, threshold: float = 0.5, seed: int = 0) -> dict[str, np.ndarray]:
    """All four localisation scores, per image, sharing one random tie-breaking of the pixel ranking."""
    flat_maps, flat_masks = _check(maps, masks)
    ranks = pixel_ranks(flat_maps, np.random.default_rng(seed))
    return {
        "iou": _iou(flat_maps >= threshold, flat_masks),
        "iou_at_mask_area": _top_mask_area_iou(ranks, flat_masks),
        "pointing_game": _pointing(ranks, flat_masks),
        "energy_pointing_game": energy_pointing_game(maps, masks),
    }
