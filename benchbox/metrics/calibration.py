"""Calibration: expected calibration error (top-label and class-wise), Brier score, NLL.

ECE uses 15 equal-width bins of the confidence: bin k holds [k/15, (k+1)/15), and a confidence
of exactly 1.0 goes in the last bin. ECE = sum over bins of |accuracy - mean confidence| times the
bin's share of images (Guo et al. 2017); class-wise ECE applies the same to each class's
probability against "is this class" and averages over classes (Kull et al. 2019).
"""

from __future__ import annotations

import numpy as np

from .bootstrap import Resamples

ECE_BINS = 15
CALIBRATION_METRICS = ("ece", "ece_classwise", "brier", "nll")
BINARY_CALIBRATION_METRICS = ("binary.ece", "binary.brier", "binary.nll")
UNDEFINED_REASONS = {name: "no images" for name in (*CALIBRATION_METRICS, *BINARY_CALIBRATION_METRICS)}
# Probabilities are clipped to [EPS, 1 - EPS] before the log, as scikit-learn's log_loss.
EPS = np.finfo(np.float64).eps


def confidence_bin(confidence: np.ndarray) -> np.ndarray:
    """ECE bin index 0 .. 14 of each confidence in [0, 1]."""
    return np.minimum((np.asarray(confidence) * ECE_BINS).astype(np.int64), ECE_BINS - 1)


def calibration_replicates(
    resamples: Resamples, y_true: np.ndarray, proba: np.ndarray, segment: np.ndarray, n_segments: int
) -> dict[str, np.ndarray]:
    """{name: (rows x n_segments)} for ece, ece_classwise, brier (sum over classes) and nll."""
    n_images, n_classes = proba.shape
    rows = np.arange(n_images)
    onehot = np.zeros_like(proba)
    onehot[rows, y_true] = 1.0
    images = np.zeros(n_images, dtype=np.int64)
    count = resamples.segment_sums(segment, n_segments, images, 1)[..., 0]
    confidence = proba.max(axis=1)
    correct = (np.argmax(proba, axis=1) == y_true).astype(np.float64)
    ece = _binned_gap(resamples, segment, n_segments, confidence_bin(confidence), ECE_BINS, correct, confidence)
    entry_image = np.repeat(rows, n_classes)
    entry_code = np.tile(np.arange(n_classes), n_images) * ECE_BINS + confidence_bin(proba.ravel())
    classwise = _binned_gap(
        resamples, segment[entry_image], n_segments, entry_code, n_classes * ECE_BINS,
        onehot.ravel(), proba.ravel(), images=entry_image,
    )
    brier = resamples.segment_sums(segment, n_segments, images, 1, ((proba - onehot) ** 2).sum(axis=1))[..., 0]
    true_proba = np.clip(proba[rows, y_true], EPS, 1 - EPS)
    nll = resamples.segment_sums(segment, n_segments, images, 1, -np.log(true_proba))[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "ece": _mean(ece, count),
            "ece_classwise": _mean(classwise / n_classes, count),
            "brier": _mean(brier, count),
            "nll": _mean(nll, count),
        }


def binary_calibration_replicates(
    resamples: Resamples, malignant: np.ndarray, score: np.ndarray, segment: np.ndarray, n_segments: int
) -> dict[str, np.ndarray]:
    """{name: (rows x n_segments)} for the malignancy score: binary.ece, binary.brier ((s - y)^2), binary.nll."""
    images = np.zeros(len(score), dtype=np.int64)
    count = resamples.segment_sums(segment, n_segments, images, 1)[..., 0]
    confidence = np.maximum(score, 1 - score)
    correct = ((score > 0.5) == (malignant == 1)).astype(np.float64)
    ece = _binned_gap(resamples, segment, n_segments, confidence_bin(confidence), ECE_BINS, correct, confidence)
    brier = resamples.segment_sums(segment, n_segments, images, 1, (score - malignant) ** 2)[..., 0]
    clipped = np.clip(score, EPS, 1 - EPS)
    loss = -(malignant * np.log(clipped) + (1 - malignant) * np.log(1 - clipped))
    nll = resamples.segment_sums(segment, n_segments, images, 1, loss)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"binary.ece": _mean(ece, count), "binary.brier": _mean(brier, count), "binary.nll": _mean(nll, count)}


def _binned_gap(
    resamples: Resamples,
    segment: np.ndarray,
    n_segments: int,
    bins: np.ndarray,
    n_bins: int,
    outcome: np.ndarray,
    confidence: np.ndarray,
    images: np.ndarray | None = None,
) -> np.ndarray:
    """Sum over bins of |sum of outcomes - sum of confidences| (rows x n_segments)."""
    outcomes = resamples.segment_sums(segment, n_segments, bins, n_bins, outcome, images)
    confidences = resamples.segment_sums(segment, n_segments, bins, n_bins, confidence, images)
    return np.abs(outcomes - confidences).sum(axis=-1)


def _mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    return np.where(count > 0, total / count, np.nan)
