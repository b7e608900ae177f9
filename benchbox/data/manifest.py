"""The one manifest shape every adapter produces: a pandas DataFrame, one row per image.

Columns (in this order): image_id, lesion_id, path, dx, malignant, mask_path, age, sex,
localization, source, dx_type, ita, ita_category. `path` and `mask_path` are absolute
paths as strings (`mask_path` is "" when there is no mask); `age` is a float (NaN when
unknown); `ita` is in degrees; `source` is the image source (HAM10000's `dataset`).
`official_split` (train/val/test) is added by adapters of datasets that define one.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from ..errors import BenchboxError
from ..labels import CLASSES, MALIGNANT_CLASSES

MANIFEST_COLUMNS = (
    "image_id",
    "lesion_id",
    "path",
    "dx",
    "malignant",
    "mask_path",
    "age",
    "sex",
    "localization",
    "source",
    "dx_type",
    "ita",
    "ita_category",
)

# Kept when an adapter knows it: the dataset's own train/val/test (ISIC 2018), and whether its official
# scoring counts the image (`scored`, False for an image kept in the data but left out of test metrics).
OPTIONAL_COLUMNS = ("official_split", "scored")


def make_manifest(rows: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Complete and check a manifest built by an adapter; `origin` names the file for messages."""
    frame = rows.copy()
    frame["malignant"] = frame["dx"].isin(MALIGNANT_CLASSES).astype(int)
    for column, default in (("mask_path", ""), ("ita", float("nan")), ("ita_category", "")):
        if column not in frame:
            frame[column] = default
    frame["mask_path"] = frame["mask_path"].fillna("").astype(str)
    frame["age"] = pd.to_numeric(frame["age"], errors="coerce").astype(float)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame]
    if missing:
        raise BenchboxError(f"{origin}: the manifest lacks column(s) {missing}")
    bad = frame.index[~frame["dx"].isin(CLASSES)]
    if len(bad):
        first = bad[0]
        raise BenchboxError(
            f"{origin}: row {first}: label {frame.loc[first, 'dx']!r} (column 'dx') is not one of "
            f"{list(CLASSES)}; {len(bad)} row(s) affected. Fix or remove those rows."
        )
    duplicated = frame["image_id"][frame["image_id"].duplicated()]
    if len(duplicated):
        raise BenchboxError(
            f"{origin}: image_id {duplicated.iloc[0]!r} appears more than once "
            f"({duplicated.nunique()} duplicated id(s)); each image must be listed once."
        )
    extra = [c for c in OPTIONAL_COLUMNS if c in frame]
    return frame[list(MANIFEST_COLUMNS) + extra].reset_index(drop=True)


def manifest_hash(manifest: pd.DataFrame, content_hashes: pd.Series | None = None) -> str:
    """sha256 over the sorted (image_id, lesion_id, dx[, image content hash]) rows."""
    columns = ["image_id", "lesion_id", "dx"]
    frame = manifest[columns].astype(str)
    if content_hashes is not None:
        frame = frame.assign(content=content_hashes.astype(str).values)
    frame = frame.sort_values("image_id")
    text = frame.to_csv(index=False, lineterminator="\n")
    return hashlib.sha256(text.encode()).hexdigest()
