"""The clustered bootstrap: resample draws, weighted sums, BCa against scipy, percentile fallback."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from benchbox.metrics.bootstrap import MIN_DEFINED_FRACTION, confidence_intervals, draw_resamples


def explicit_weights(resamples):
    """The (rows x images) weight matrix of the documented row layout, built the slow way."""
    rows = [np.ones(resamples.n_images)]
    for b in range(resamples.n_bootstrap):
        rows.append(resamples.counts[resamples.cluster_index, b])
    for g in range(resamples.n_clusters):
        rows.append((resamples.cluster_index != g).astype(float))
    return np.array(rows)


def test_draws_are_seeded_and_resample_whole_lesions():
    lesions = np.array(["a", "a", "b", "c", "c", "c", "d"])
    first, again, other = (draw_resamples(lesions, 50, seed) for seed in (7, 7, 8))
    assert np.array_equal(first.counts, again.counts)
    assert not np.array_equal(first.counts, other.counts)
    assert first.counts.shape == (4, 50)
    assert (first.counts.sum(axis=0) == 4).all()  # each resample draws as many lesions as there are
    weights = explicit_weights(first)
    # images of one lesion always carry the same weight
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 3] == weights[:, 5]).all()
    assert first.n_rows == 1 + 50 + 4


def test_segment_sums_equal_the_explicit_weight_matrix():
    rng = np.random.default_rng(0)
    n = 60
    lesions = rng.integers(0, 25, n)
    resamples = draw_resamples(lesions, 30, 1)
    segment = rng.integers(-1, 3, n)  # -1 = left out
    codes = rng.integers(0, 4, n)
    values = rng.normal(size=n)
    weights = explicit_weights(resamples)
    got = resamples.segment_sums(segment, 3, codes, 4, values)
    for s in range(3):
        for c in range(4):
            inside = (segment == s) & (codes == c)
            np.testing.assert_allclose(got[:, s, c], weights[:, inside] @ values[inside], atol=1e-12)


def test_cluster_columns_follow_the_row_layout():
    resamples = draw_resamples(np.arange(6) // 2, 5, 2)
    full = np.concatenate([resamples.cluster_columns(a, b) for a, b in resamples.row_chunks(10)], axis=1)
    np.testing.assert_array_equal(full.T[:, resamples.cluster_index], explicit_weights(resamples))


def mean_replicates(x, resamples):
    zeros = np.zeros(len(x), dtype=int)
    total = resamples.segment_sums(zeros, 1, zeros, 1, x)[:, 0, 0]
    count = resamples.segment_sums(zeros, 1, zeros, 1)[:, 0, 0]
    with np.errstate(invalid="ignore"):  # a jackknife row without images has no mean
        return total / count


def test_bca_matches_scipy_on_a_skewed_mean():
    """With one image per cluster our BCa is the textbook one: compare with scipy.stats.bootstrap.

    Both use 20,000 resamples of their own, so they agree to Monte Carlo error (< 3% of the
    width), while BCa and percentile differ by 6-12% of the width here.
    """
    x = np.random.default_rng(0).lognormal(0, 1.5, 30)
    resamples = draw_resamples(np.arange(len(x)), 20_000, 1)
    replicates = mean_replicates(x, resamples)[None]
    ours = confidence_intervals(replicates, 20_000, 0.05, "bca")
    percentile = confidence_intervals(replicates, 20_000, 0.05, "percentile")
    scipy = stats.bootstrap((x,), np.mean, n_resamples=20_000, method="BCa", rng=np.random.default_rng(5))
    width = scipy.confidence_interval.high - scipy.confidence_interval.low
    assert ours.method == ["bca"] and percentile.method == ["percentile"]
    assert abs(ours.low[0] - scipy.confidence_interval.low) < 0.03 * width
    assert abs(ours.high[0] - scipy.confidence_interval.high) < 0.03 * width
    assert ours.high[0] - percentile.high[0] > 0.08 * width  # right skew moves BCa up


def test_percentile_interval_is_numpys_quantile():
    x = np.random.default_rng(1).normal(size=50)
    resamples = draw_resamples(np.arange(50) // 2, 400, 3)
    replicates = mean_replicates(x, resamples)
    result = confidence_intervals(replicates[None], 400, 0.1, "percentile")
    expected = np.quantile(replicates[1:401], [0.05, 0.95])
    assert (result.low[0], result.high[0]) == pytest.approx(tuple(expected), abs=1e-12)


def test_bca_falls_back_to_percentile_when_degenerate():
    n_boot, n_jack = 100, 10
    constant = np.full(1 + n_boot + n_jack, 0.7)
    one_sided = np.r_[0.5, np.linspace(0.6, 0.9, n_boot), np.linspace(0.4, 0.6, n_jack)]  # all resamples above
    result = confidence_intervals(np.stack([constant, one_sided]), n_boot, 0.05, "bca")
    assert result.method == ["percentile", "percentile"]
    assert (result.low[0], result.high[0]) == (0.7, 0.7)
    # every resample lies above the estimate 0.5: the percentile interval would miss it, so its
    # low end moves to the estimate and the reason says so
    assert result.low[1] == 0.5
    assert result.high[1] == pytest.approx(np.quantile(one_sided[1 : 1 + n_boot], 0.975))
    assert "extended to the estimate" in result.reason[1]


def test_undefined_resamples_drop_the_ci_or_are_reported():
    n_boot = 200
    base = np.r_[0.5, np.random.default_rng(2).normal(0.5, 0.05, n_boot), np.full(5, 0.5)]
    few, many = base.copy(), base.copy()
    few[1:4] = np.nan  # 3 of 200 undefined: CI from the 197 others
    many[1 : 1 + int(n_boot * (1 - MIN_DEFINED_FRACTION)) + 2] = np.nan
    result = confidence_intervals(np.stack([few, many]), n_boot, 0.05, "percentile")
    assert result.low[0] == pytest.approx(np.quantile(few[4 : 1 + n_boot], 0.025))
    assert result.reason[0] == "CI from the 197 of 200 resamples where the metric is defined"
    assert np.isnan(result.low[1]) and result.method[1] is None
    assert "defined in only" in result.reason[1]


def test_a_single_lesion_gives_no_interval():
    resamples = draw_resamples(np.array(["L1"] * 8), 100, 0)
    replicates = mean_replicates(np.arange(8.0), resamples)
    result = confidence_intervals(replicates[None], 100, 0.05, "bca")
    assert np.isnan(result.low[0]) and result.method == [None]
    assert result.reason == ["no CI: the images come from a single lesion"]
