"""Lesion-clustered bootstrap: weight rows over images, and confidence intervals from them.

Images of one lesion are correlated, so resampling images understates the uncertainty; we
resample clusters (lesions) with replacement and give every image its cluster's draw count
as a weight. A metric is then computed once for a whole matrix of weight rows:

    row 0            the data as observed (every weight 1): the point estimate
    rows 1 .. B      B bootstrap resamples (cluster draw counts)
    rows B+1 .. B+G  G jackknife rows (cluster j left out), for the BCa acceleration

so the confusion matrices of all rows are one sparse matrix product, and a rank statistic a few
running sums (see `ranking.py`), instead of B calls of a per-sample function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
from scipy import sparse
from scipy.special import ndtr, ndtri

# A CI is only reported when the metric is defined in at least this share of the resamples;
# dropping more undefined resamples (say, a group that lost all its positives) would bias it.
MIN_DEFINED_FRACTION = 0.95
# Largest set of resample weights kept in memory for reuse across rank metrics (see cluster_columns).
COLUMN_CACHE_BYTES = 64 << 20


@dataclass(frozen=True)
class Resamples:
    """The weight rows of one bootstrap: `counts[g, b]` = draws of cluster g in resample b.

    With no resamples (B = 0) there are no jackknife rows either: only the point estimate.
    """

    cluster_index: np.ndarray  # (N,) cluster of each image, 0 .. G-1
    counts: np.ndarray  # (G, B) float64 draw counts
    _columns: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_images(self) -> int:
        return len(self.cluster_index)

    @property
    def n_clusters(self) -> int:
        return self.counts.shape[0]

    @property
    def n_bootstrap(self) -> int:
        return self.counts.shape[1]

    @property
    def n_rows(self) -> int:
        return 1 + self.n_bootstrap + (self.n_clusters if self.n_bootstrap else 0)

    def cluster_columns(self, start: int, stop: int, dtype: type = np.float64) -> np.ndarray:
        """Weights (clusters x rows) of rows [start, stop) of the row layout (point, bootstrap, jackknife).

        Read-only. Every rank metric of a method reuses them, so they are kept when all of them
        fit in COLUMN_CACHE_BYTES (a 2,000-image test set does), else rebuilt per call.
        """
        key = (start, stop, np.dtype(dtype).str)
        if key in self._columns:
            return self._columns[key]
        n_clusters, n_boot = self.counts.shape
        row = np.arange(start, stop)
        weights = np.ones((n_clusters, len(row)), dtype=dtype)
        boot = (row >= 1) & (row <= n_boot)
        weights[:, boot] = self.counts[:, row[boot] - 1]
        jack = np.flatnonzero(row > n_boot)
        weights[row[jack] - n_boot - 1, jack] = 0.0
        weights.flags.writeable = False
        if self.n_clusters * self.n_rows * weights.itemsize <= COLUMN_CACHE_BYTES:
            self._columns[key] = weights
        return weights

    def row_chunks(self, n_images: int) -> Iterator[tuple[int, int]]:
        """Row 0 (the point estimate) alone, then ranges of rows such that an (images x rows)
        float32 block stays under about 32 MB."""
        yield 0, 1
        size = max(256, (1 << 23) // max(n_images, 1))
        for start in range(1, self.n_rows, size):
            yield start, min(start + size, self.n_rows)

    def segment_sums(
        self,
        segment: np.ndarray,
        n_segments: int,
        codes: np.ndarray,
        n_codes: int,
        values: np.ndarray | None = None,
        images: np.ndarray | None = None,
    ) -> np.ndarray:
        """sums[r, s, c] = sum over entries of segment s with code c of w[r, image] * value.

        Entries are one per image unless `images` gives each entry's image (several entries per
        image, e.g. one per class). Entries with a negative segment are left out. Sums are taken
        per cluster (a sparse codes x clusters matrix), one sparse product with the draw counts
        gives every bootstrap row, and each jackknife row is the total minus one cluster.
        """
        images = np.arange(self.n_images) if images is None else images
        keep = segment >= 0
        flat = segment[keep] * n_codes + codes[keep]
        weights = np.ones(int(keep.sum())) if values is None else np.asarray(values, dtype=np.float64)[keep]
        per_cluster = sparse.csr_matrix(
            (weights, (flat, self.cluster_index[images[keep]])), shape=(n_segments * n_codes, self.n_clusters)
        )
        total = np.asarray(per_cluster.sum(axis=1)).T
        parts = [total]
        if self.n_bootstrap:
            parts += [(per_cluster @ self.counts).T, total - per_cluster.toarray().T]
        return np.concatenate(parts).reshape(-1, n_segments, n_codes)


def draw_resamples(clusters: np.ndarray, n_resamples: int, seed: int) -> Resamples:
    """Draw `n_resamples` cluster bootstrap resamples; the same clusters and seed give the same draws."""
    _, cluster_index = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
    n_clusters = int(cluster_index.max()) + 1 if len(cluster_index) else 0
    rng = np.random.default_rng(seed)
    if n_clusters == 0 or n_resamples == 0:
        counts = np.zeros((n_clusters, 0))
    else:
        # G draws with replacement per resample, counted per cluster (one bincount for all resamples)
        draws = rng.integers(0, n_clusters, size=(n_resamples, n_clusters))
        draws += np.arange(n_resamples)[:, None] * n_clusters
        counts = np.bincount(draws.ravel(), minlength=n_resamples * n_clusters).reshape(n_resamples, n_clusters).T
    counts = np.ascontiguousarray(counts, dtype=np.float64)
    return Resamples(cluster_index=cluster_index.astype(np.int64), counts=counts)


@dataclass(frozen=True)
class Intervals:
    """Confidence intervals for M metrics; `method[i]` is "bca", "percentile" or None (no CI)."""

    low: np.ndarray
    high: np.ndarray
    method: list[str | None]
    reason: list[str | None]


def confidence_intervals(replicates: np.ndarray, n_bootstrap: int, alpha: float, method: str) -> Intervals:
    """Two-sided (1 - alpha) intervals for each row of `replicates` (M x rows, the layout above).

    `method="bca"` gives bias-corrected and accelerated intervals (Efron 1987; acceleration from
    the cluster jackknife) and falls back to the percentile interval, per metric, when BCa is
    degenerate: every resample on one side of the estimate, constant or undefined jackknife
    values, adjusted levels outside (0, 1), or an interval that misses the estimate. Every
    interval contains its estimate: where even the percentile interval misses it, its near end
    is moved to the estimate and `reason` says so.
    """
    replicates = np.atleast_2d(replicates)
    n_metrics = replicates.shape[0]
    point = replicates[:, 0]
    boot = replicates[:, 1 : 1 + n_bootstrap]
    jack = replicates[:, 1 + n_bootstrap :]
    low = np.full(n_metrics, np.nan)
    high = np.full(n_metrics, np.nan)
    methods: list[str | None] = [None] * n_metrics
    reasons: list[str | None] = [None] * n_metrics
    if n_bootstrap == 0:
        return Intervals(low, high, methods, ["no bootstrap resamples requested"] * n_metrics)
    if jack.shape[1] < 2:
        return Intervals(low, high, methods, ["no CI: the images come from a single lesion"] * n_metrics)
    n_defined = np.isfinite(boot).sum(axis=1)
    usable = np.isfinite(point) & (n_defined >= np.ceil(MIN_DEFINED_FRACTION * n_bootstrap))
    levels = np.tile([alpha / 2, 1 - alpha / 2], (n_metrics, 1))
    use_bca = np.zeros(n_metrics, dtype=bool)
    if method == "bca":
        bca_levels, use_bca = _bca_levels(point, boot, jack, n_defined, alpha)
        levels = np.where(use_bca[:, None], bca_levels, levels)
    ends = _quantiles(boot, n_defined, levels)
    # An interval must contain its estimate. BCa can miss it when the metric is biased under
    # resampling (ECE, say): take the percentile interval, and where that misses it too, extend
    # the near end to the estimate (and say so).
    outside = use_bca & ((point < ends[:, 0]) | (point > ends[:, 1]))
    if outside.any():
        use_bca &= ~outside
        ends[outside] = _quantiles(boot[outside], n_defined[outside], np.tile([alpha / 2, 1 - alpha / 2], (outside.sum(), 1)))
    extended = (point < ends[:, 0]) | (point > ends[:, 1])
    ends[:, 0] = np.fmin(ends[:, 0], point)
    ends[:, 1] = np.fmax(ends[:, 1], point)
    for i in range(n_metrics):
        if not usable[i]:
            if np.isfinite(point[i]):
                reasons[i] = f"no CI: the metric is defined in only {n_defined[i]} of {n_bootstrap} resamples"
            continue
        low[i], high[i] = ends[i]
        methods[i] = "bca" if use_bca[i] else "percentile"
        if n_defined[i] < n_bootstrap:
            reasons[i] = f"CI from the {n_defined[i]} of {n_bootstrap} resamples where the metric is defined"
        if extended[i]:
            reasons[i] = ("CI extended to the estimate: the resampled values lie on one side of it "
                          "(the metric is biased under resampling)")
    return Intervals(low, high, methods, reasons)


def _bca_levels(
    point: np.ndarray, boot: np.ndarray, jack: np.ndarray, n_defined: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """BCa-adjusted quantile levels (M x 2) and whether BCa is usable for each metric."""
    with np.errstate(invalid="ignore", divide="ignore"):
        below = (boot < point[:, None]).sum(axis=1)
        equal = (boot == point[:, None]).sum(axis=1)
        bias = ndtri((below + 0.5 * equal) / np.maximum(n_defined, 1))
        deviation = jack.mean(axis=1, keepdims=True) - jack
        spread = (deviation**2).sum(axis=1)
        acceleration = (deviation**3).sum(axis=1) / (6.0 * spread**1.5)
        z = ndtri(np.array([alpha / 2, 1 - alpha / 2]))
        shifted = bias[:, None] + z[None, :]
        denominator = 1.0 - acceleration[:, None] * shifted
        levels = ndtr(bias[:, None] + shifted / denominator)
    usable = (
        np.isfinite(bias)
        & np.isfinite(acceleration)
        & (spread > 0)
        & np.all(denominator > 0, axis=1)
        & np.all((levels > 0) & (levels < 1), axis=1)
    )
    return levels, usable


def _quantiles(boot: np.ndarray, n_defined: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per-row linear-interpolation quantiles (numpy's default) of the finite values of each row."""
    ordered = np.sort(boot, axis=1)  # NaN sort last, so the first n_defined values are the finite ones
    position = np.clip(levels, 0, 1) * (np.maximum(n_defined, 1) - 1)[:, None]
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, np.maximum(n_defined, 1)[:, None] - 1)
    rows = np.arange(len(boot))[:, None]
    fraction = position - lower
    with np.errstate(invalid="ignore"):
        return ordered[rows, lower] + fraction * (ordered[rows, upper] - ordered[rows, lower])
