"""Malignant-vs-benign metrics: the binary score of any method, metrics at an operating point,
threshold-free rank metrics, and the recall-constrained threshold of the recall-ensemble paper.

A 7-class method's malignancy score is the sum of its mel, bcc and akiec probabilities; a binary
method's is its column 1. Sensitivity, specificity and precision whose denominator is empty are
NaN (isic-challenge-scoring returns 1.0 there, which flatters a model on a class-free subgroup).
"""

from __future__ import annotations

import numpy as np

from ..errors import BenchboxError
from ..labels import MALIGNANT_INDICES
from .bootstrap import Resamples
from .ranking import PAUC_MIN_SENSITIVITY, SPECIFICITY_LEVELS, rank_statistics

DEFAULT_THRESHOLD = 0.5
THRESHOLD_METRICS = ("binary.accuracy", "binary.sensitivity", "binary.specificity", "binary.precision", "binary.f1")
RANK_METRICS = ("binary.auc", "binary.ap", *(f"binary.{s}" for s in (*SPECIFICITY_LEVELS, *PAUC_MIN_SENSITIVITY)))
UNDEFINED_REASONS = {
    "binary.accuracy": "no images",
    "binary.sensitivity": "no malignant images",
    "binary.specificity": "no benign images",
    "binary.precision": "no image was predicted malignant",
    "binary.f1": "no malignant image is present or predicted",
    **{name: "needs both malignant and benign images" for name in RANK_METRICS},
}


def binary_view(task: str, y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(1 = malignant labels, malignancy scores) of a "multiclass" or "binary" method's output."""
    if task == "multiclass":
        return np.isin(y_true, MALIGNANT_INDICES).astype(np.int64), proba[:, list(MALIGNANT_INDICES)].sum(axis=1)
    return np.asarray(y_true, dtype=np.int64), proba[:, 1]


def threshold_replicates(
    resamples: Resamples,
    malignant: np.ndarray,
    score: np.ndarray,
    threshold: float,
    segment: np.ndarray,
    n_segments: int,
) -> dict[str, np.ndarray]:
    """{name: (rows x n_segments)} for the metrics at the operating point `score >= threshold`."""
    flagged = (score >= threshold).astype(np.int64)
    sums = resamples.segment_sums(segment, n_segments, malignant * 2 + flagged, 4)
    tn, fp, fn, tp = (sums[..., i] for i in range(4))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "binary.accuracy": _ratio(tp + tn, tp + tn + fp + fn),
            "binary.sensitivity": _ratio(tp, tp + fn),
            "binary.specificity": _ratio(tn, tn + fp),
            "binary.precision": _ratio(tp, tp + fp),
            "binary.f1": _ratio(2 * tp, 2 * tp + fp + fn),
        }


def rank_replicates(
    resamples: Resamples,
    malignant: np.ndarray,
    score: np.ndarray,
    segment: np.ndarray,
    n_segments: int,
    names: tuple[str, ...] = RANK_METRICS,
) -> dict[str, np.ndarray]:
    """{name: (rows x n_segments)} for `names` among AUC, AP, sensitivity at 80/90/95% specificity
    and partial AUC above 80% sensitivity (see `ranking.rank_statistics`)."""
    statistics = tuple(name.removeprefix("binary.") for name in names)
    stats = rank_statistics(resamples, score, malignant == 1, statistics, segment, n_segments)
    return {f"binary.{name}": value for name, value in stats.items()}


def recall_constrained_threshold(
    malignant: np.ndarray, score: np.ndarray, min_recall: float, step: float = 0.02
) -> float:
    """t* = argmax F1 subject to recall >= min_recall, over thresholds 0, step, 2*step, ..., 1.

    The recall-ensemble paper's rule; use it on validation data only. A malignant prediction is
    `score >= t`. Among equal F1 the lowest threshold wins (the higher recall), and t = 0 always
    meets the recall constraint, so a threshold is always returned.
    """
    malignant = np.asarray(malignant).astype(bool)
    if malignant.all() or not malignant.any():
        raise BenchboxError(
            "recall-constrained threshold: the validation labels hold only one class; "
            "choose the operating point on data with both malignant and benign images."
        )
    grid = np.round(np.arange(0.0, 1.0 + step / 2, step), 10)
    flagged = score[None, :] >= grid[:, None]
    tp = (flagged & malignant).sum(axis=1)
    fp = (flagged & ~malignant).sum(axis=1)
    fn = malignant.sum() - tp
    recall = tp / malignant.sum()
    f1 = 2 * tp / (2 * tp + fp + fn)
    f1 = np.where(recall >= min_recall - 1e-12, f1, -1.0)  # tolerance: 0.88 must meet 0.88
    return float(grid[int(np.argmax(f1))])


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.where(denominator > 0, numerator / denominator, np.nan)
