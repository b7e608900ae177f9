"""Adapter for the HAM10000 release layout (Tschandl et al. 2018), also written by `synthderm`.

    HAM10000_metadata.csv                  lesion_id,image_id,dx,dx_type,age,sex,localization,dataset
    HAM10000_images_part_1/<image_id>.jpg  images may be spread over part_1 and part_2
    HAM10000_images_part_2/<image_id>.jpg
    HAM10000_segmentations_lesion_tschandl/<image_id>_segmentation.png   optional lesion masks
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..errors import BenchboxError
from ..labels import CLASSES
from .dataset import Dataset, finalize
from .ita import DEFAULT_CORRECTION
from .manifest import make_manifest
from .tables import check_filled, check_labels, check_unique, read_table

METADATA_FILE = "HAM10000_metadata.csv"
IMAGE_FOLDERS = ("HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images")
MASK_FOLDER = "HAM10000_segmentations_lesion_tschandl"
METADATA_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _index_files(folder: Path, strip: str = "") -> dict[str, str]:
    """Map file stem (minus `strip`) -> path for the image files directly in `folder`."""
    if not folder.is_dir():
        return {}
    found = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, suffix = os.path.splitext(entry.name)
            if suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
                found[stem[: -len(strip)] if strip and stem.endswith(strip) else stem] = entry.path
    return found


def read_metadata(root: Path) -> pd.DataFrame:
    """The checked metadata table of a HAM10000-layout folder, one row per image, no files touched."""
    path = root / METADATA_FILE
    table = read_table(path, METADATA_COLUMNS, "a HAM10000 release")
    check_labels(table, "dx", CLASSES, path)
    check_filled(table, "image_id", path)
    check_unique(table, "image_id", path)
    return table


def metadata_manifest(root: Path) -> pd.DataFrame:
    """The manifest from metadata alone (paths may not exist): enough to build a split."""
    table = read_metadata(root)
    frame = table.rename(columns={"dataset": "source"}).assign(path="", mask_path="")
    return make_manifest(frame, str(root / METADATA_FILE))


def load_ham10000(
    root: Path, only_present: bool = False, on_bad_image: str = "fail", name: str = "ham10000", progress: bool = True,
    ita_correction: str = DEFAULT_CORRECTION,
) -> Dataset:
    """Read a HAM10000-layout folder; refuse when listed images are missing unless `only_present`."""
    root = Path(root).resolve()
    table = read_metadata(root)
    images: dict[str, str] = {}
    for folder in IMAGE_FOLDERS:
        images.update(_index_files(root / folder))
    masks = _index_files(root / MASK_FOLDER, strip="_segmentation")
    present = table["image_id"].isin(images.keys())
    notes = []
    if not present.all():
        missing = table.loc[~present, "image_id"]
        searched = ", ".join(f"{f}/" for f in IMAGE_FOLDERS[:2])
        if not only_present:
            raise BenchboxError(
                f"{root / METADATA_FILE} lists {len(table):,} images but {len(missing):,} of them are not in "
                f"{searched} under {root} (e.g. {', '.join(missing.head(3))}). Download the missing part(s) "
                f"of the release, or pass --only-present to use the {int(present.sum()):,} images that are there."
            )
        if not present.any():
            raise BenchboxError(f"{root}: none of the images listed in {METADATA_FILE} is in {searched}.")
        notes.append(f"restricted to the {int(present.sum()):,} of {len(table):,} listed images that are present")
        table = table[present].reset_index(drop=True)
    frame = table.rename(columns={"dataset": "source"}).assign(
        path=table["image_id"].map(images),
        mask_path=table["image_id"].map(masks).fillna(""),
    )
    n_masks = int((frame["mask_path"] != "").sum())
    if n_masks < len(frame):
        notes.append(f"lesion masks for {n_masks:,} of {len(frame):,} images (folder {MASK_FOLDER}/)")
    manifest = make_manifest(frame, str(root / METADATA_FILE))
    return finalize(name, root, manifest, notes, on_bad_image, progress, ita_correction)
