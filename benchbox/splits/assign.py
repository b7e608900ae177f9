"""Deal whole groups to train/val/test (or to inner folds), stratified by class.

Each class's groups are dealt separately: shuffled with the seed, then taken largest first,
each to the split whose image count is furthest below its target (fraction x the class's
images). Every split so receives its fraction of every class's images to within about one
group, which keeps each class's share of every split near its share overall while no group
is ever divided. scikit-learn's StratifiedGroupKFold only makes equal folds, and the outer
fractions are unequal, so splits and folds use this one procedure.

A group holding several labels (near-duplicates merged across lesions) is dealt under its
majority label; a tie goes to the most severe label, malignant first (SEVERITY).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import DEFAULT_FRACTIONS, SPLITS

SEVERITY = ("mel", "bcc", "akiec", "df", "vasc", "bkl", "nv")  # tie-break order, most severe first
_SPLIT_STREAM, _FOLD_STREAM = 0, 1  # independent random streams under one seed


def group_labels(groups: Sequence[str], labels: Sequence[str]) -> pd.Series:
    """The label each group is stratified under (index: group id): majority, ties to the most severe."""
    counts = pd.DataFrame({"group": groups, "label": labels}).value_counts().rename("n").reset_index()
    counts["severity"] = counts["label"].map({label: rank for rank, label in enumerate(SEVERITY)}).fillna(len(SEVERITY))
    counts = counts.sort_values(["group", "n", "severity", "label"], ascending=[True, False, True, True])
    return counts.drop_duplicates("group").set_index("group")["label"]


def deal_groups(
    labels_of_groups: pd.Series, sizes_of_groups: pd.Series, fractions: Sequence[float], rng: np.random.Generator
) -> pd.Series:
    """Bin index (into `fractions`) per group, filling each class's bins to their target image counts."""
    shares = np.asarray(fractions, dtype=float) / float(np.sum(fractions))
    assigned = {}
    for label in sorted(labels_of_groups.unique()):
        members = labels_of_groups.index[labels_of_groups == label].to_numpy()
        sizes = sizes_of_groups.loc[members].to_numpy()
        order = rng.permutation(len(members))
        order = order[np.argsort(-sizes[order], kind="stable")]  # largest first, shuffled within a size
        target = shares * sizes.sum()
        filled = np.zeros(len(shares))
        for i in order:
            chosen = int(np.argmax(target - filled))
            filled[chosen] += sizes[i]
            assigned[members[i]] = chosen
    return pd.Series(assigned, dtype=np.int64)


def _deal_images(groups: Sequence[str], labels: Sequence[str], fractions: Sequence[float], rng) -> np.ndarray:
    groups = pd.Series(np.asarray(groups, dtype=object))
    bins = deal_groups(group_labels(groups, labels), groups.value_counts(), fractions, rng)
    return groups.map(bins).to_numpy(dtype=np.int64)


def assign_splits(
    groups: Sequence[str], labels: Sequence[str], fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
) -> np.ndarray:
    """'train' / 'val' / 'test' per image; all images of a group get the same split."""
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    return np.asarray(SPLITS, dtype=object)[_deal_images(groups, labels, fractions, rng)]


def assign_folds(groups: Sequence[str], labels: Sequence[str], n_folds: int, seed: int = 0) -> np.ndarray:
    """Fold index 0..n_folds-1 per image, grouped and stratified like the splits."""
    rng = np.random.default_rng([seed, _FOLD_STREAM])
    return _deal_images(groups, labels, [1.0] * n_folds, rng)
