from __future__ import annotations

import numpy as np
import pytest

from benchbox.errors import BenchboxError
from benchbox.training.folds import grouped_folds


def test_grouped_folds_keep_groups_whole_and_cover_every_image_once():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), rng.integers(1, 4, 60))
    targets = (groups % 3 == 0).astype(int)
    folds = grouped_folds(targets, groups, 3, seed=0)
    assert len(folds) == 3
    seen = np.concatenate([val for _, val in folds])
    assert sorted(seen.tolist()) == list(range(len(groups)))
    for train, val in folds:
        assert not set(groups[train]) & set(groups[val])
        assert 0.2 < targets[val].mean() < 0.5  # stratified: about a third positive in every fold
    again = grouped_folds(targets, groups, 3, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


def test_grouped_folds_need_enough_groups():
    with pytest.raises(BenchboxError, match="needs at least 3 groups; the training set has 2"):
        grouped_folds(np.array([0, 1, 0, 1]), np.array(["a", "a", "b", "b"]), 3, seed=0)
