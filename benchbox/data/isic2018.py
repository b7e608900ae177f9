"""Adapter for ISIC 2018 Task 3 (Codella et al. 2019): ground-truth CSVs plus input folders.

Any of the three official parts may be present; each row keeps its part in `official_split`:

    ISIC2018_Task3_Training_GroundTruth.csv   + ISIC2018_Task3_Training_Input/     (train)
    ISIC2018_Task3_Validation_GroundTruth.csv + ISIC2018_Task3_Validation_Input/   (val)
    ISIC2018_Task3_Test_GroundTruth.csv       + ISIC2018_Task3_Test_Input/         (test)
    ISIC2018_Task3_Training_LesionGroupings.csv   optional: image,lesion_id,diagnosis_confirm_type

Ground truth is one-hot over `image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`. Without lesion groupings an
image is its own lesion (the release gives none for validation and test), which the notes say.

Official scoring: the challenge scorer (isic-challenge-scoring, `load_csv.parse_truth_csv`) gives
test image ISIC_0035068 score weight 0 by a hard-coded rule ("TODO: Move this to ground truth"),
so the official leaderboard scores 1,511 of the 1,512 test images. The adapter keeps the image in
the data (it is loaded, hashed, split and predicted) and leaves it out of scoring: its manifest
row has `official_split` "test" and `scored` False, and a note says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import BenchboxError
from ..labels import ISIC_COLUMNS
from .dataset import Dataset, finalize
from .ita import DEFAULT_CORRECTION
from .ham10000 import _index_files
from .manifest import make_manifest
from .tables import check_filled, check_unique, read_table

PARTS = (("Training", "train"), ("Validation", "val"), ("Test", "test"))
# Test images the official scorer weights 0 (isic-challenge-scoring 5.6, load_csv.py), and why.
OFFICIAL_UNSCORED = {
    "ISIC_0035068": "the official scorer (isic-challenge-scoring, load_csv.parse_truth_csv) gives it weight 0 "
    "by a hard-coded rule",
}


def officially_scored(image_ids) -> np.ndarray:
    """True for each image the official ISIC 2018 Task 3 scorer counts (every one but OFFICIAL_UNSCORED)."""
    return ~pd.Series(np.asarray(image_ids, dtype=object)).astype(str).isin(OFFICIAL_UNSCORED.keys()).to_numpy()


def _read_part(root: Path, part: str, split: str, only_present: bool, notes: list[str]) -> pd.DataFrame | None:
    path = root / f"ISIC2018_Task3_{part}_GroundTruth.csv"
    if not path.exists():
        return None
    table = read_table(path, ("image",) + ISIC_COLUMNS, "an ISIC 2018 Task 3 ground-truth file")
    check_filled(table, "image", path)
    check_unique(table, "image", path)
    try:
        onehot = table[list(ISIC_COLUMNS)].astype(float).to_numpy()
    except ValueError as error:
        raise BenchboxError(f"{path}: the class columns must hold numbers ({error}).") from error
    bad = ~((np.isclose(onehot, 0) | np.isclose(onehot, 1)).all(axis=1) & np.isclose(onehot.sum(axis=1), 1))
    if bad.any():
        row = int(bad.nonzero()[0][0])
        raise BenchboxError(
            f"{path}: line {row + 2} (image {table['image'].iloc[row]}) is not one-hot over {list(ISIC_COLUMNS)}; "
            f"{int(bad.sum())} row(s) affected. Each row needs exactly one 1.0."
        )
    folder = root / f"ISIC2018_Task3_{part}_Input"
    files = _index_files(folder)
    present = table["image"].isin(files.keys())
    if not present.all():
        missing = table.loc[~present, "image"]
        if not only_present:
            raise BenchboxError(
                f"{path} lists {len(table):,} images but {len(missing):,} are not in {folder}/ "
                f"(e.g. {', '.join(missing.head(3))}). Add them, or pass --only-present."
            )
        notes.append(f"{part}: restricted to the {int(present.sum()):,} of {len(table):,} listed images present")
        table, onehot = table[present].reset_index(drop=True), onehot[present.to_numpy()]
    dx = np.array([c.lower() for c in ISIC_COLUMNS])[onehot.argmax(axis=1)]
    return pd.DataFrame(
        {
            "image_id": table["image"],
            "path": table["image"].map(files),
            "dx": dx,
            "official_split": split,
            "source": f"isic2018_{split}",
        }
    )


def load_isic2018(
    root: Path, only_present: bool = False, on_bad_image: str = "fail", progress: bool = True,
    ita_correction: str = DEFAULT_CORRECTION,
) -> Dataset:
    root = Path(root).resolve()
    notes: list[str] = []
    parts = [_read_part(root, part, split, only_present, notes) for part, split in PARTS]
    parts = [p for p in parts if p is not None]
    if not parts:
        raise BenchboxError(
            f"{root}: no ISIC2018_Task3_{{Training,Validation,Test}}_GroundTruth.csv found; "
            "point at the folder that holds the ISIC 2018 Task 3 files."
        )
    frame = pd.concat(parts, ignore_index=True)
    check_unique(frame.rename(columns={"image_id": "image"}), "image", root)
    groupings = root / "ISIC2018_Task3_Training_LesionGroupings.csv"
    lesion_of, confirm_of = {}, {}
    if groupings.exists():
        table = read_table(groupings, ("image", "lesion_id"), "the ISIC 2018 lesion groupings")
        lesion_of = dict(zip(table["image"], table["lesion_id"]))
        if "diagnosis_confirm_type" in table:
            confirm_of = dict(zip(table["image"], table["diagnosis_confirm_type"]))
    frame["lesion_id"] = [lesion_of.get(i, i) for i in frame["image_id"]]
    frame["dx_type"] = [confirm_of.get(i, "unknown") for i in frame["image_id"]]
    ungrouped = int((~frame["image_id"].isin(lesion_of.keys())).sum())
    if ungrouped:
        notes.append(f"no lesion grouping for {ungrouped:,} image(s): each is treated as its own lesion")
    frame = frame.assign(age=np.nan, sex="unknown", localization="unknown", mask_path="")
    frame["scored"] = (frame["official_split"] != "test") | officially_scored(frame["image_id"])
    for image_id in frame.loc[~frame["scored"], "image_id"]:
        notes.append(
            f"official scoring: test image {image_id} is left out of scoring (kept in the data): "
            f"{OFFICIAL_UNSCORED[image_id]}, so benchbox's ISIC 2018 test metrics match the official leaderboard's"
        )
    manifest = make_manifest(frame, str(root))
    return finalize("isic2018", root, manifest, notes, on_bad_image, progress, ita_correction)
