"""Weighted rank statistics — ROC AUC, average precision, sensitivity at a specificity, partial
AUC — for every weight row of a bootstrap at once, within segments (subgroups) of the images.

Per segment, positives and negatives are sorted by score once. For each weight row, the running
sums of positive and of negative weight (in score order) give every point of the ROC and
precision-recall curves: the AUC is the Mann-Whitney sum over positives of the negative weight
below them (ties count one half). Integer weights give exactly what scikit-learn computes on the
images repeated that many times.
"""

from __future__ import annotations

import numpy as np

from .bootstrap import Resamples

# Specificity levels of `sens_at_specXX`, and the sensitivity above which `pauc_sensXX` integrates.
SPECIFICITY_LEVELS = {"sens_at_spec80": 0.80, "sens_at_spec90": 0.90, "sens_at_spec95": 0.95}
PAUC_MIN_SENSITIVITY = {"pauc_sens80": 0.80}
RANK_STATISTICS = ("auc", "ap", *SPECIFICITY_LEVELS, *PAUC_MIN_SENSITIVITY)
# Slack on the specificity constraint so that fp/n = 0.1 counts as specificity 0.9 despite rounding.
SPECIFICITY_TOLERANCE = 1e-9


def rank_statistics(
    resamples: Resamples,
    score: np.ndarray,
    positive: np.ndarray,
    statistics: tuple[str, ...],
    segment: np.ndarray | None = None,
    n_segments: int = 1,
) -> dict[str, np.ndarray]:
    """{statistic: (rows x n_segments)} for images with `segment >= 0`; NaN where a segment lacks a class.

    - auc: area under the ROC curve (ties count one half), as `sklearn.metrics.roc_auc_score`.
    - ap: average precision, as `sklearn.metrics.average_precision_score` (step-wise, no interpolation).
    - sens_at_specXX: the highest sensitivity of any threshold whose specificity is >= XX%.
    - pauc_sensXX: area under the ROC curve where sensitivity >= XX%, divided by its maximum
      (1 - XX/100), so 1 is perfect: the mean specificity over that sensitivity range.
    """
    unknown = sorted(set(statistics) - set(RANK_STATISTICS))
    if unknown:
        raise ValueError(f"unknown rank statistic(s) {unknown}; known: {RANK_STATISTICS}")
    segment = np.zeros(len(score), dtype=np.int64) if segment is None else segment
    out = {name: np.full((resamples.n_rows, n_segments), np.nan) for name in statistics}
    curves = [_RankedSegment(np.flatnonzero(segment == s), score, positive) for s in range(n_segments)]
    for start, stop in resamples.row_chunks(len(score)):
        # The point estimate in float64; resample rows in float32, which halves the memory traffic.
        # Counts and their running sums stay exact in float32 (below 2^24) and totals are taken in
        # float64, so a resample's AUC is exact and its AP or pAUC within ~1e-6.
        cluster_weights = resamples.cluster_columns(start, stop, np.float64 if start == 0 else np.float32)
        for s, curve in enumerate(curves):
            if curve.size:
                cum_pos = _running_sums(cluster_weights, resamples.cluster_index[curve.pos_images])
                cum_neg = _running_sums(cluster_weights, resamples.cluster_index[curve.neg_images])
                for name, value in curve.statistics(cum_pos, cum_neg, statistics).items():
                    out[name][start:stop, s] = value
    return out


def _running_sums(cluster_weights: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """(len(clusters) + 1) x rows: 0, then the cumulative weight of the images in the given order.

    Adding one image's row after another is several times faster than np.cumsum down axis 0 of
    an (images x many resample rows) block, which numpy does not vectorise; it also gathers each
    image's weights on the way instead of copying them first.
    """
    n_rows = cluster_weights.shape[1]
    out = np.zeros((len(clusters) + 1, n_rows), dtype=cluster_weights.dtype)
    if n_rows < 32:
        np.cumsum(cluster_weights[clusters], axis=0, out=out[1:])
        return out
    for i, cluster in enumerate(clusters.tolist()):
        np.add(out[i], cluster_weights[cluster], out=out[i + 1])
    return out


class _RankedSegment:
    """One segment's positives and negatives sorted by score, and where each score falls in the other class.

    A "block" is a run of positives with one score; a threshold at a block's score u flags
    pos_ge = the positive weight with score >= u and neg_ge = the negative weight with score >= u.
    """

    def __init__(self, images: np.ndarray, score: np.ndarray, positive: np.ndarray) -> None:
        is_positive = positive[images].astype(bool)
        self.pos_images = _by_score(images[is_positive], score)
        self.neg_images = _by_score(images[~is_positive], score)
        self.size = len(images)
        pos_score, neg_score = score[self.pos_images], score[self.neg_images]
        self.block_first = np.flatnonzero(np.r_[len(pos_score) > 0, pos_score[1:] != pos_score[:-1]])
        self.block_end = np.r_[self.block_first[1:], len(pos_score)][: len(self.block_first)].astype(np.int64)
        block_score = pos_score[self.block_first]
        self.neg_below = np.searchsorted(neg_score, block_score, side="left")
        self.neg_up_to = np.searchsorted(neg_score, block_score, side="right")
        self.untied_positives = len(self.block_first) == len(pos_score)
        self.untied_across = bool((self.neg_below == self.neg_up_to).all())
        # Thresholds just above each distinct negative score, for sensitivity at a specificity.
        distinct = np.r_[neg_score[1:] != neg_score[:-1], True][: len(neg_score)]
        self.neg_cut = np.r_[0, np.flatnonzero(distinct) + 1]
        self.pos_cut = np.r_[0, np.searchsorted(pos_score, neg_score[distinct], side="right")]

    def statistics(
        self, cum_pos: np.ndarray, cum_neg: np.ndarray, statistics: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        """Each statistic per weight row, from the running sums of positive and negative weight."""
        total_pos, total_neg = cum_pos[-1], cum_neg[-1]
        # Without ties among positives every block is one image: slices instead of gathers.
        first = cum_pos[:-1] if self.untied_positives else cum_pos[self.block_first]
        block_pos = np.diff(cum_pos, axis=0) if self.untied_positives else cum_pos[self.block_end] - first
        neg_below = cum_neg[self.neg_below]
        neg_up_to = neg_below if self.untied_across else cum_neg[self.neg_up_to]
        n_pos, n_neg = total_pos.astype(np.float64), total_neg.astype(np.float64)
        out: dict[str, np.ndarray] = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            for name in statistics:
                if name == "auc":  # negatives below each positive, ties counting one half
                    pairs = np.einsum("ij,ij->j", block_pos, 0.5 * (neg_below + neg_up_to), dtype=np.float64)
                    value = pairs / (n_pos * n_neg)
                elif name == "ap":
                    pos_ge, neg_ge = total_pos - first, total_neg - neg_below
                    precision = pos_ge / np.maximum(pos_ge + neg_ge, np.finfo(pos_ge.dtype).tiny)
                    value = np.einsum("ij,ij->j", block_pos, precision, dtype=np.float64) / n_pos
                elif name in SPECIFICITY_LEVELS:
                    value = self._sensitivity_at(SPECIFICITY_LEVELS[name], cum_pos, cum_neg) / n_pos
                else:
                    pos_ge, neg_ge, neg_gt = total_pos - first, total_neg - neg_below, total_neg - neg_up_to
                    value = _partial_auc(block_pos, pos_ge, neg_ge, neg_gt, total_pos, total_neg, name)
                out[name] = np.where((n_pos > 0) & (n_neg > 0), value, np.nan)
        return out

    def _sensitivity_at(self, specificity: float, cum_pos: np.ndarray, cum_neg: np.ndarray) -> np.ndarray:
        """Most positive weight caught by a threshold whose flagged negative weight <= (1 - spec) * total.

        Raising the threshold past the k lowest distinct negative scores flags less of both classes,
        so the best threshold is the lowest feasible one: the first k whose flagged negatives fit.
        """
        flagged_neg = cum_neg[-1] - cum_neg[self.neg_cut]
        limit = (1.0 - specificity + SPECIFICITY_TOLERANCE) * cum_neg[-1].astype(np.float64)
        k = (flagged_neg > limit).sum(axis=0)  # past every negative nothing is flagged: k always fits
        return cum_pos[-1] - cum_pos[self.pos_cut[k], np.arange(cum_pos.shape[1])]


def _by_score(images: np.ndarray, score: np.ndarray) -> np.ndarray:
    return images[np.argsort(score[images], kind="stable")]


def _partial_auc(
    block_pos: np.ndarray,
    pos_ge: np.ndarray,
    neg_ge: np.ndarray,
    neg_gt: np.ndarray,
    total_pos: np.ndarray,
    total_neg: np.ndarray,
    name: str,
) -> np.ndarray:
    """Normalised area under the ROC polyline where TPR >= the minimum sensitivity of `name`.

    Only a block of positives raises the TPR: from (neg_gt, pos_ge - block) to (neg_ge, pos_ge)
    in (FP, TP) weight, a straight line when negatives tie with it (scikit-learn's trapezoids).
    """
    minimum = PAUC_MIN_SENSITIVITY[name]
    tpr_high = pos_ge / total_pos
    tpr_low = tpr_high - block_pos / total_pos
    fpr_low, fpr_high = neg_gt / total_neg, neg_ge / total_neg
    start = np.maximum(tpr_low, minimum)
    rise = tpr_high - tpr_low
    fraction = np.divide(start - tpr_low, rise, out=np.zeros_like(rise), where=rise > 0)
    fpr_start = fpr_low + fraction * (fpr_high - fpr_low)
    area = np.where(tpr_high > start, (tpr_high - start) * (1.0 - 0.5 * (fpr_start + fpr_high)), 0.0)
    return area.sum(axis=0, dtype=np.float64) / (1.0 - minimum)
