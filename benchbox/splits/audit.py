"""Leakage audit of a split: lesions, groups and near-duplicate images shared between splits, and
each split's class balance. A split is leaky when any of the three overlaps is non-empty.
Images `--drop-leaking` dropped (split 'dropped') are in no split: they are listed with what they
duplicate and are left out of the overlaps, sizes and class balance."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from tabulate import tabulate

from ..labels import CLASSES
from . import DROPPED, SPLITS
from .grouping import (
    HASH_SIZE,
    NEAR_DUPLICATE_MAX_BITS,
    image_paths,
    lesion_ids_or_image_ids,
    near_duplicate_pairs,
    perceptual_hashes,
)
from .manifest import crossings

SHOWN = 10  # overlapping lesions / pairs listed in the printed report


@dataclass
class Audit:
    """What was checked and what was found; `near_duplicates` is None when images were absent."""

    checked: list[str]
    lesion_overlaps: pd.DataFrame  # key (lesion_id), splits, images
    group_crossings: pd.DataFrame  # key (group_id), splits, images
    near_duplicates: pd.DataFrame | None  # image_a, split_a, image_b, split_b, bits
    class_balance: pd.DataFrame
    split_sizes: pd.DataFrame  # per split: images, groups, lesions
    dropped: pd.DataFrame | None = None  # image_id, part, group_id, duplicates (--drop-leaking); None: none

    @property
    def leaky(self) -> bool:
        found = [self.lesion_overlaps, self.group_crossings]
        if self.near_duplicates is not None:
            found.append(self.near_duplicates)
        return any(len(frame) for frame in found)


def class_balance(labels: pd.Series, splits: pd.Series) -> pd.DataFrame:
    """Each class's share (%) of all images and of each split, and the largest gap in points."""
    labels, splits = pd.Series(labels.to_numpy()), pd.Series(splits.to_numpy())
    shares = pd.crosstab(labels, splits, normalize="columns").reindex(index=CLASSES, columns=SPLITS).fillna(0) * 100
    shares.insert(0, "all", labels.value_counts(normalize=True).reindex(CLASSES).fillna(0) * 100)
    shares["max gap (pp)"] = shares[list(SPLITS)].sub(shares["all"], axis=0).abs().max(axis=1)
    return shares.rename_axis(index="class", columns=None)


def _cross_split_near_duplicates(manifest: pd.DataFrame, splits: pd.Series, progress: bool) -> pd.DataFrame | None:
    paths = image_paths(manifest)
    if paths is None:
        return None
    pairs = near_duplicate_pairs(perceptual_hashes(paths, progress), progress=progress)
    split = splits.to_numpy()
    in_a_split = (split[pairs[:, 0]] != DROPPED) & (split[pairs[:, 1]] != DROPPED)
    pairs = pairs[in_a_split & (split[pairs[:, 0]] != split[pairs[:, 1]])]
    ids = manifest["image_id"].astype(str).to_numpy()
    return pd.DataFrame(
        {
            "image_a": ids[pairs[:, 0]],
            "split_a": split[pairs[:, 0]],
            "image_b": ids[pairs[:, 1]],
            "split_b": split[pairs[:, 1]],
            "bits": pairs[:, 2],
        }
    )


def _dropped_table(records: list[dict], split_table: pd.DataFrame) -> pd.DataFrame | None:
    """The dropped images of this dataset, one row each, with what each duplicates in words."""
    present = set(split_table.loc[split_table["split"] == DROPPED, "image_id"])
    rows = [
        {
            "image_id": r["image_id"],
            "part": r["part"],
            "group_id": r["group_id"],
            "duplicates": "; ".join(
                f"{d['image_id']} ({d['part']}, "
                + ("same lesion_id" if d["by"] == "lesion_id" else "near-duplicate")
                + (f", {d['bits']} bits" if d["bits"] is not None else "")
                + ")"
                for d in r["duplicates"]
            ),
        }
        for r in records
        if r["image_id"] in present
    ]
    return pd.DataFrame(rows, columns=["image_id", "part", "group_id", "duplicates"]) if rows else None


def audit_split(
    manifest: pd.DataFrame, split_table: pd.DataFrame, progress: bool = True, dropped: list[dict] | None = None
) -> Audit:
    """Audit `split_table` (rows in `manifest` order, as `match_dataset` returns them) against the dataset.

    dropped: the split's `manifest.dropped_images` records, listed in the report (None or [] when none).
    """
    splits = split_table["split"].reset_index(drop=True)
    lesions = lesion_ids_or_image_ids(manifest).reset_index(drop=True)
    lesion_overlaps = crossings(lesions, splits)
    groups = split_table["group_id"].reset_index(drop=True)
    group_crossings = crossings(groups, splits)
    near = _cross_split_near_duplicates(manifest.reset_index(drop=True), splits, progress)
    kept = (splits != DROPPED).to_numpy()
    checked = [
        f"lesions in more than one split, over {lesions[kept].nunique():,} lesion ids: {len(lesion_overlaps):,}",
        f"split groups in more than one split, over {groups[kept].nunique():,} groups: "
        f"{len(group_crossings):,}",
        (
            f"near-duplicate image pairs across splits (phash {HASH_SIZE * HASH_SIZE} bits, best of 8 "
            f"orientations, <= {NEAR_DUPLICATE_MAX_BITS} bits apart), over {int(kept.sum()):,} images: {len(near):,}"
            if near is not None
            else "near-duplicate image pairs across splits: NOT CHECKED, the dataset has no image files"
        ),
    ]
    dropped_table = _dropped_table(dropped or [], split_table)
    if not kept.all():
        parts = dropped_table["part"].value_counts() if dropped_table is not None else pd.Series(dtype=int)
        checked.append(
            f"images dropped by --drop-leaking (in no split; each duplicates an image of an earlier official part, "
            f"train > val > test): {int((~kept).sum()):,}"
            + (" (" + ", ".join(f"{p} {parts[p]}" for p in SPLITS if p in parts) + ")" if len(parts) else "")
        )
    sizes = pd.DataFrame({"split": splits, "group": groups, "lesion": lesions})[kept]
    split_sizes = (
        sizes.groupby("split")
        .agg(images=("group", "size"), groups=("group", "nunique"), lesions=("lesion", "nunique"))
        .reindex(SPLITS, fill_value=0)
    )
    balance = class_balance(manifest["dx"].reset_index(drop=True)[kept], splits[kept])
    return Audit(checked, lesion_overlaps, group_crossings, near, balance, split_sizes, dropped_table)


def format_audit(audit: Audit) -> str:
    """The printed report: what was checked, the overlaps found (first few), class balance, verdict."""
    lines = ["checked:"] + [f"  - {item}" for item in audit.checked]
    for title, frame in (
        ("lesions in more than one split", audit.lesion_overlaps.rename(columns={"key": "lesion_id"})),
        ("groups in more than one split", audit.group_crossings.rename(columns={"key": "group_id"})),
        ("near-duplicate pairs across splits", audit.near_duplicates),
        ("images dropped by --drop-leaking, and what each duplicates", audit.dropped),
    ):
        if frame is not None and len(frame):
            lines += ["", f"{title} (first {min(SHOWN, len(frame))} of {len(frame):,}):"]
            lines.append(tabulate(frame.head(SHOWN), headers="keys", tablefmt="github", showindex=False))
    lines += ["", "split sizes:", tabulate(audit.split_sizes, headers="keys", tablefmt="github")]
    lines += ["", "class balance (% of each split's images):"]
    lines.append(tabulate(audit.class_balance, headers="keys", tablefmt="github", floatfmt=".2f"))
    lines += ["", "verdict: LEAKY" if audit.leaky else "verdict: no leak found"]
    return "\n".join(lines)
