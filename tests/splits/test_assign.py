from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchbox.splits.assign import assign_folds, assign_splits, deal_groups, group_labels


def class_share_gaps(labels, splits) -> pd.Series:
    """Largest |share of class in split - share of class overall| in points, per class (pandas only)."""
    frame = pd.DataFrame({"dx": np.asarray(labels), "split": np.asarray(splits)})
    overall = frame["dx"].value_counts(normalize=True)
    within = frame.groupby("split")["dx"].value_counts(normalize=True).unstack(fill_value=0)
    return (within - overall).abs().max() * 100


def test_group_label_is_majority_with_ties_to_the_most_severe():
    groups = ["g1", "g1", "g1", "g2", "g2", "g3", "g3", "g4"]
    labels = ["nv", "nv", "mel", "nv", "mel", "bkl", "df", "vasc"]
    assert group_labels(groups, labels).to_dict() == {"g1": "nv", "g2": "mel", "g3": "df", "g4": "vasc"}


def test_singletons_are_dealt_to_exact_targets():
    # 20 single-image groups of one class at 70/15/15: 14 / 3 / 3 exactly
    labels = pd.Series(["nv"] * 20, index=[f"g{i}" for i in range(20)])
    sizes = pd.Series(1, index=labels.index)
    bins = deal_groups(labels, sizes, (0.7, 0.15, 0.15), np.random.default_rng(0))
    assert np.bincount(bins.to_numpy(), minlength=3).tolist() == [14, 3, 3]


def test_each_class_gets_its_fraction_to_within_one_group(random_manifest):
    split = assign_splits(random_manifest["lesion_id"], random_manifest["dx"], seed=3)
    counts = pd.crosstab(random_manifest["dx"], split)
    largest_lesion = random_manifest["lesion_id"].value_counts().max()
    for fraction, column in zip((0.7, 0.15, 0.15), ("train", "val", "test")):
        target = counts.sum(axis=1) * fraction
        assert ((counts[column] - target).abs() <= largest_lesion).all()


def test_groups_are_never_divided_and_seed_fixes_the_split(random_manifest):
    groups, labels = random_manifest["lesion_id"], random_manifest["dx"]
    split = assign_splits(groups, labels, seed=0)
    assert pd.Series(split).groupby(groups.to_numpy()).nunique().max() == 1
    assert np.array_equal(split, assign_splits(groups, labels, seed=0))
    other = assign_splits(groups, labels, seed=1)
    assert (split != other).mean() > 0.2  # a different seed moves many images


def test_folds_are_grouped_stratified_and_balanced(random_manifest):
    groups, labels = random_manifest["lesion_id"], random_manifest["dx"]
    folds = assign_folds(groups, labels, n_folds=3, seed=0)
    assert set(folds) == {0, 1, 2}
    assert pd.Series(folds).groupby(groups.to_numpy()).nunique().max() == 1
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 2 * groups.value_counts().max()
    assert class_share_gaps(labels, folds).max() < 1.5
    assert not np.array_equal(folds, assign_folds(groups, labels, n_folds=3, seed=1))


def test_ham10000_lesion_split_class_shares_within_1_5_points(ham_metadata):
    split = assign_splits(ham_metadata["lesion_id"], ham_metadata["dx"], seed=0)
    gaps = class_share_gaps(ham_metadata["dx"], split)
    assert set(gaps.index) == {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    assert gaps.max() <= 1.5
    shares = pd.Series(split).value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.70, abs=0.005)
    assert shares["val"] == pytest.approx(0.15, abs=0.005)
    assert pd.Series(split).groupby(ham_metadata["lesion_id"].to_numpy()).nunique().max() == 1
