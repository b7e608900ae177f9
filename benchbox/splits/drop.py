"""`--drop-leaking`: make a leaking official split leak-free by dropping val/test images, never train.

ISIC 2018's official parts were not made with our groups (grouping.py), so a lesion or a
near-duplicate pair under two lesion ids can straddle two parts. Rather than refuse the split,
every group that spans parts keeps the images of its earliest part by the precedence
train > val > test and the images it has in later parts are dropped: a val image duplicating a
train image goes, and so does a test image duplicating a val (or train) image. Training data is
never touched and what stays has no group in two parts. This is what Abhishek et al. did for
DermaMNIST ("Investigating the Quality of DermaMNIST and Fitzpatrick17k Dermatological Image
Datasets"): duplicates and leaks were removed from val/test, never from train.

A dropped image keeps its row (split value DROPPED) so the split's CSV, and its sha256, still
covers every dataset image; why it was dropped is recorded in the split's json (see
`manifest.dropped_images`).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from . import DROPPED, SPLITS
from .grouping import Grouping

PRECEDENCE = SPLITS  # train > val > test: a group keeps its images in the first part it reaches
RULE = (
    "--drop-leaking: a lesion/near-duplicate group with images in more than one official part keeps "
    "those of its earliest part (precedence train > val > test) and the rest are dropped (split value "
    f"{DROPPED!r}, in no part); train images are never dropped"
)


def _links_of(rows: set[int], grouping: Grouping) -> dict[int, dict[int, int | None]]:
    """For each row in `rows`: the rows it is directly linked to (same lesion, or a near-duplicate
    pair) -> the pair's Hamming distance in bits, or None for a lesion link without a hash pair."""
    links: dict[int, dict[int, int | None]] = defaultdict(dict)
    if grouping.pairs is not None:
        for i, j, bits in grouping.pairs.tolist():
            if i in rows or j in rows:
                links[i][j] = links[j][i] = int(bits)
    by_lesion = pd.Series(sorted(rows)).groupby(grouping.lesions[sorted(rows)]).agg(list)
    for members in by_lesion:
        for i in members:
            for j in members:
                if i != j:
                    links[i].setdefault(j, None)
    return links


def _record(i: int, rank: np.ndarray, kept: int, image_ids: np.ndarray, grouping: Grouping, links: dict) -> dict:
    """Why row i was dropped: the images of earlier parts it duplicates directly, or, when it reaches
    them only through other dropped images (e.g. its lesion's other val image), every image it duplicates."""
    linked = [j for j in links[i] if rank[j] < rank[i]] or list(links[i])
    duplicates = [
        {
            "image_id": str(image_ids[j]),
            "part": PRECEDENCE[rank[j]],
            "by": "lesion_id" if grouping.lesions[j] == grouping.lesions[i] else "near-duplicate",
            "bits": links[i][j],
        }
        for j in sorted(linked, key=lambda j: (rank[j], str(image_ids[j])))
    ]
    return {
        "image_id": str(image_ids[i]),
        "lesion_id": str(grouping.lesions[i]),
        "group_id": str(grouping.groups[i]),
        "part": PRECEDENCE[rank[i]],
        "kept_part": PRECEDENCE[kept],
        "duplicates": duplicates,
    }


def drop_leaking_images(
    official: np.ndarray, grouping: Grouping, image_ids: np.ndarray
) -> tuple[np.ndarray, list[dict]]:
    """The split per row (the official part, or DROPPED) and one record per dropped image, by image_id.

    official: 'train'/'val'/'test' per row; grouping: grouping.grouping_of on the same rows.
    """
    rank = pd.Series(official).map({part: k for k, part in enumerate(PRECEDENCE)}).to_numpy(dtype=np.int64)
    first = pd.Series(rank).groupby(grouping.groups).transform("min").to_numpy()
    dropped = np.flatnonzero(rank > first)
    split = np.asarray(official, dtype=object).copy()
    split[dropped] = DROPPED
    if not len(dropped):
        return split, []
    in_crossing_groups = set(np.flatnonzero(pd.Series(grouping.groups).isin(grouping.groups[dropped])).tolist())
    links = _links_of(in_crossing_groups, grouping)
    records = [_record(i, rank, first[i], image_ids, grouping, links) for i in dropped]
    return split, sorted(records, key=lambda r: r["image_id"])
