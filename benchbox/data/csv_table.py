"""Generic adapter: any CSV with one row per image.

Required columns: image_id, path, dx (one of the seven classes). Optional: lesion_id (defaults to
image_id), mask_path, age, sex, localization, source, dx_type. Relative paths are read relative to
the CSV's folder.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import BenchboxError
from ..labels import CLASSES
from .dataset import Dataset, finalize
from .ita import DEFAULT_CORRECTION
from .manifest import make_manifest
from .tables import check_filled, check_labels, check_unique, read_table

OPTIONAL_DEFAULTS = {"mask_path": "", "age": "", "sex": "unknown", "localization": "unknown", "dx_type": "unknown"}


def _resolve(base: Path, value: str) -> str:
    if not value:
        return ""
    path = Path(value)
    return str(path if path.is_absolute() else (base / path).resolve())


def load_csv(
    path: Path, only_present: bool = False, on_bad_image: str = "fail", progress: bool = True,
    ita_correction: str = DEFAULT_CORRECTION,
) -> Dataset:
    path = Path(path).resolve()
    table = read_table(path, ("image_id", "path", "dx"), "a benchbox CSV dataset")
    check_labels(table, "dx", CLASSES, path)
    check_filled(table, "image_id", path)
    check_unique(table, "image_id", path)
    for column, default in OPTIONAL_DEFAULTS.items():
        if column not in table:
            table[column] = default
    if "lesion_id" not in table:
        table["lesion_id"] = table["image_id"]
    if "source" not in table:
        table["source"] = path.stem
    table["path"] = [_resolve(path.parent, p) for p in table["path"]]
    table["mask_path"] = [_resolve(path.parent, p) for p in table["mask_path"]]
    present = pd.Series([Path(p).is_file() for p in table["path"]])
    notes = []
    if not present.all():
        row = int((~present).to_numpy().nonzero()[0][0])
        if not only_present:
            raise BenchboxError(
                f"{path}: {int((~present).sum())} image file(s) not found, first on line {row + 2}, column 'path': "
                f"{table['path'].iloc[row]}. Fix the paths, or pass --only-present to use the images that exist."
            )
        notes.append(f"restricted to the {int(present.sum())} of {len(table)} listed images that exist")
        table = table[present.to_numpy()].reset_index(drop=True)
    missing_masks = [p for p in table["mask_path"] if p and not Path(p).is_file()]
    if missing_masks:
        raise BenchboxError(f"{path}: mask file(s) not found, e.g. {missing_masks[0]} (column 'mask_path').")
    manifest = make_manifest(table, str(path))
    return finalize("csv", path.parent, manifest, notes, on_bad_image, progress, ita_correction)
