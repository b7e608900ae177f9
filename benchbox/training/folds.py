"""Grouped inner cross-validation: every image of a group (a lesion and its near-duplicates) in one fold."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from ..errors import BenchboxError


def grouped_folds(targets: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_index, val_index) per fold, stratified by target at group level, seeded.

    Use the ImageSet's `groups` (the split's leak-free group ids), never image ids: an inner
    fold that splits a lesion would leak just as an outer split would.
    """
    targets, groups = np.asarray(targets), np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise BenchboxError(f"{n_folds}-fold grouped cross-validation needs at least {n_folds} groups; the training set has {n_groups}.")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # rare classes with fewer groups than folds cannot be in every fold; that is expected
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return [(train, val) for train, val in splitter.split(np.zeros(len(targets)), targets, groups)]
