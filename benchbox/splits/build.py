"""Build a split table (`image_id, group_id, split[, fold]`) from a dataset manifest.

Schemes: `lesion` deals leak-free groups (grouping.py) to train/val/test by class
(assign.py); `official` keeps ISIC 2018's own parts, which the isic2018 adapter records in
the manifest column `official_split`, and refuses them when a group spans two parts unless
`drop_leaking` (drop.py) drops the val/test images of such groups. `image_level_split` is the
leaky baseline the published methods used: every image its own group, so one lesion can sit in
train and test.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import BenchboxError
from . import DEFAULT_FRACTIONS, SCHEMES, SPLITS
from .assign import assign_folds, assign_splits
from .drop import RULE, drop_leaking_images
from .grouping import grouping_of

DROP_LEAKING_HINT = (
    "Pass --drop-leaking to drop the val/test images of those groups (train > val > test; train is never "
    "touched; the split's json lists each dropped image and what it duplicates): "
    "`benchbox split DATA --scheme official --drop-leaking --out FILE`, then `benchbox run ... --split FILE`"
)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(f) for f in fractions)
    if len(values) != len(SPLITS) or min(values) <= 0 or abs(sum(values) - 1) > 1e-6:
        raise BenchboxError(
            f"split fractions {list(values)} must be three positive numbers (train, val, test) summing to 1, "
            "e.g. --fractions 0.7 0.15 0.15."
        )
    return values


def check_drop_leaking(scheme: str, drop_leaking: bool) -> None:
    """--drop-leaking only means something for the official scheme; refused before any image is read."""
    if drop_leaking and scheme != "official":
        raise BenchboxError(
            f"--drop-leaking applies to --scheme official only: --scheme {scheme} deals whole lesion/near-duplicate "
            "groups, so no group spans two parts and there is nothing to drop. Leave out --drop-leaking."
        )


def _official_parts(manifest: pd.DataFrame) -> np.ndarray:
    """The dataset's own train/val/test per row (manifest column `official_split`)."""
    if "official_split" not in manifest:
        raise BenchboxError(
            "this dataset has no official split (no 'official_split' column in its manifest); only the "
            "isic2018 adapter provides one. Use --scheme lesion."
        )
    official = manifest["official_split"].astype(str).to_numpy()
    unknown = sorted(set(official) - set(SPLITS))
    if unknown:
        raise BenchboxError(f"column 'official_split' holds {unknown}; expected only {list(SPLITS)}.")
    return official.astype(object)


def _refuse_leaking(official: np.ndarray, groups: np.ndarray) -> None:
    """Refuses the official split when one of our groups spans two of its parts, naming the way out."""
    per_group = pd.Series(official).groupby(groups).unique()
    crossing = per_group[per_group.map(len) > 1]
    if len(crossing):
        examples = "; ".join(f"group {g} in {sorted(s)}" for g, s in crossing.head(3).items())
        raise BenchboxError(
            f"the official split leaks: {len(crossing)} lesion/near-duplicate group(s) span two of its parts "
            f"({examples}). {DROP_LEAKING_HINT}. Or run `benchbox audit` on it to list them, or use --scheme lesion."
        )


def _check_non_empty(table: pd.DataFrame, column: str, expected: Sequence, fix: str) -> None:
    empty = [v for v in expected if not (table[column] == v).any()]
    if empty:
        raise BenchboxError(
            f"{column} {empty} would hold no image ({table['group_id'].nunique()} leak-free group(s) to deal). {fix}"
        )


def _with_folds(table: pd.DataFrame, labels: np.ndarray, folds: int | None, seed: int) -> pd.DataFrame:
    if folds is None:
        return table
    if folds < 2:
        raise BenchboxError(f"--folds must be at least 2, not {folds}.")
    train = (table["split"] == "train").to_numpy()
    fold = pd.Series(pd.NA, index=table.index, dtype="Int64")
    fold[train] = assign_folds(table.loc[train, "group_id"].to_numpy(), labels[train], folds, seed)
    table = table.assign(fold=fold)
    _check_non_empty(table[train], "fold", range(folds), "Use fewer folds.")
    return table


def make_split(
    manifest: pd.DataFrame,
    scheme: str = "lesion",
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    folds: int | None = None,
    progress: bool = True,
    drop_leaking: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """The split table in manifest order, and how it was made (the split's json record).

    drop_leaking (official scheme only): rows of val/test images whose group reaches an earlier part
    get split "dropped" instead of a refusal; info["dropped_images"] says why (drop.py), [] when none.
    """
    if scheme not in SCHEMES:
        raise BenchboxError(f"unknown split scheme {scheme!r}; use one of {list(SCHEMES)}.")
    if seed < 0:
        raise BenchboxError(f"--seed must be a non-negative integer, not {seed}.")
    check_drop_leaking(scheme, drop_leaking)
    fractions = _check_fractions(fractions)
    official = _official_parts(manifest) if scheme == "official" else None  # before hashing any image
    grouping = grouping_of(manifest, progress)
    groups = grouping.groups
    labels = manifest["dx"].astype(str).to_numpy()
    image_ids = manifest["image_id"].astype(str).to_numpy()
    dropped = []
    if scheme == "lesion":
        split = assign_splits(groups, labels, fractions, seed)
    elif drop_leaking:
        split, dropped = drop_leaking_images(official, grouping, image_ids)
    else:
        _refuse_leaking(official, groups)
        split = official
    table = pd.DataFrame({"image_id": image_ids, "group_id": groups, "split": split})
    fix = (
        "Use a larger dataset."
        if scheme == "lesion"
        else "The dataset holds no images of those official parts"
        + (f" once the {len(dropped)} leaking image(s) are dropped" if dropped else "")
        + ": add their files, or use --scheme lesion."
    )
    _check_non_empty(table, "split", SPLITS, fix)
    table = _with_folds(table, labels, folds, seed)
    info = {
        "scheme": scheme,
        "seed": seed,
        "fractions": dict(zip(SPLITS, fractions)) if scheme == "lesion" else "official",
        "folds": folds,
        "grouping": grouping.description,
    }
    if drop_leaking:
        info["drop_leaking"] = RULE
        info["dropped_images"] = dropped
    return table, info


def image_level_split(
    manifest: pd.DataFrame, seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> tuple[pd.DataFrame, dict]:
    """A class-stratified random split of images, ignoring lesions: the leak to measure, never to use."""
    fractions = _check_fractions(fractions)
    image_ids = manifest["image_id"].astype(str).to_numpy()
    split = assign_splits(image_ids, manifest["dx"].astype(str).to_numpy(), fractions, seed)
    table = pd.DataFrame({"image_id": image_ids, "group_id": image_ids, "split": split})
    info = {
        "scheme": "image (leaky: ignores lesions, for measuring leakage only)",
        "seed": seed,
        "fractions": dict(zip(SPLITS, fractions)),
        "folds": None,
        "grouping": {"by": "none: every image is its own group"},
    }
    return table, info
