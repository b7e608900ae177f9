from __future__ import annotations

import numpy as np
import pytest

from benchbox.explain.maps import keep_top_fraction, normalise_maps, pixel_ranks


def test_normalise_maps_scales_each_map_on_its_own():
    maps = np.stack([np.array([[0.0, 1.0], [2.0, 4.0]]), np.array([[10.0, 10.0], [10.0, 30.0]])])
    out = normalise_maps(maps)
    np.testing.assert_allclose(out[0], [[0, 0.25], [0.5, 1]])
    np.testing.assert_allclose(out[1], [[0, 0], [0, 1]])
    assert out.dtype == np.float32


def test_normalise_maps_turns_a_constant_map_into_zeros_not_nan():
    out = normalise_maps(np.full((2, 3, 3), 7.0))
    assert np.array_equal(out, np.zeros((2, 3, 3), np.float32))


def test_normalise_maps_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        normalise_maps(np.array([[[np.nan, 1.0]]]))


def test_keep_top_fraction_keeps_the_top_quarter_and_rescales():
    values = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    out = keep_top_fraction(values, 0.25)
    expected = np.where(values >= 12, values / 15, 0.0)  # top 4 of 16 pixels, max stays 1
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_keep_top_fraction_of_a_constant_map_is_zeros():
    assert not keep_top_fraction(np.ones((1, 4, 4)), 0.25).any()


def test_pixel_ranks_orders_by_value_and_is_a_permutation():
    rng = np.random.default_rng(1)
    maps = rng.integers(0, 4, size=(3, 5, 6)).astype(np.float32) / 3  # many ties
    ranks = pixel_ranks(maps, np.random.default_rng(0))
    flat = maps.reshape(3, -1)
    for row, rank in zip(flat, ranks):
        assert np.array_equal(np.sort(rank), np.arange(30))
        by_rank = row[np.argsort(rank)]
        assert np.all(np.diff(by_rank) <= 0)
    np.testing.assert_array_equal(ranks, pixel_ranks(maps, np.random.default_rng(0)))


def test_pixel_ranks_breaks_ties_uniformly_at_random():
    flat_map = np.zeros((1, 2, 2), np.float32)
    first = [int(np.argmin(pixel_ranks(flat_map, np.random.default_rng(seed))[0])) for seed in range(400)]
    counts = np.bincount(first, minlength=4)
    assert counts.min() > 60 and counts.max() < 140  # 100 expected each; binomial sd ~ 8.7


def test_pixel_ranks_treats_negative_zero_as_zero():
    maps = np.array([[[-0.0, 0.5], [0.0, 1.0]]], np.float32)
    ranks = pixel_ranks(maps, np.random.default_rng(0))[0]
    assert ranks[3] == 0 and ranks[1] == 1 and set(ranks[[0, 2]]) == {2, 3}
