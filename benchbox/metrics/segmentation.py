"""Dice and IoU of predicted lesion masks against ground-truth masks, per image and on average.

A pair of empty masks has no overlap to measure: its Dice and IoU are NaN (not 1), and the
mean is over the images where they are defined.
"""

from __future__ import annotations

import numpy as np

from ..errors import BenchboxError

SEGMENTATION_METRICS = ("segmentation.dice", "segmentation.iou")


def dice_iou(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image (Dice, IoU) of boolean masks N x H x W; NaN where both masks are empty."""
    if predicted.shape != truth.shape:
        raise BenchboxError(
            f"predicted masks {predicted.shape} and true masks {truth.shape} differ in shape; predict masks "
            "at the resolution of the ground-truth masks."
        )
    predicted = predicted.reshape(len(predicted), -1).astype(bool)
    truth = truth.reshape(len(truth), -1).astype(bool)
    overlap = (predicted & truth).sum(axis=1).astype(np.float64)
    size_sum = predicted.sum(axis=1) + truth.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(size_sum > 0, 2 * overlap / size_sum, np.nan)
        iou = np.where(size_sum > 0, overlap / (size_sum - overlap), np.nan)
    return dice, iou
