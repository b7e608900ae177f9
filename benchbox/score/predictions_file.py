"""Read a predictions file of a model trained elsewhere, and refuse it by file, line and column
when it cannot be scored.

Three layouts are read, told apart by their header:
- the ISIC 2018 Task 3 submission CSV: `image,MEL,NV,BCC,AKIEC,BKL,DF,VASC` (7-class);
- benchbox's own `predictions.csv`: `image_id, ..., split, ..., p_<class>` columns, 7-class
  (`p_akiec` ... `p_vasc`) or binary (`p_benign, p_malignant`); its `val` rows, when present,
  can give the operating point;
- a binary CSV: `image,malignant` (the probability of malignancy).
Line numbers in messages are the file's own (the header is line 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import BenchboxError
from ..labels import CLASSES, ISIC_COLUMNS
from ..metrics.validation import ROW_SUM_TOLERANCE

SHOWN = 5  # lines or ids quoted in a message
ISIC_HEADER = ["image", *ISIC_COLUMNS]
BINARY_HEADER = ["image", "malignant"]
LAYOUTS = (f"the ISIC 2018 Task 3 submission CSV ({','.join(ISIC_HEADER)}), benchbox's predictions.csv "
           f"(image_id, split, p_akiec ... p_vasc or p_benign, p_malignant), or a binary CSV "
           f"({','.join(BINARY_HEADER)})")


@dataclass
class PredictionsFile:
    """A predictions file's rows as image ids and probabilities in benchbox's label space."""

    path: Path
    layout: str  # "isic2018" | "benchbox" | "binary"
    task: str  # "multiclass" | "binary"
    image_ids: np.ndarray
    proba: np.ndarray  # (n, 7) in CLASSES order, or (n, 2) benign, malignant
    split: np.ndarray | None  # benchbox's layout only: the split of each row


def _lines(mask: np.ndarray, ids: np.ndarray | None = None) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(f"line {i + 2}" + (f" ({ids[i]})" if ids is not None else "") for i in rows[:SHOWN])
    return shown + (f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else "")


def _layout(path: Path, columns: list[str]) -> tuple[str, str, list[str], str]:
    """(layout, task, probability columns in benchbox order, id column) from the header."""
    names = set(columns)
    if names == set(ISIC_HEADER):
        return "isic2018", "multiclass", [c.upper() for c in CLASSES], "image"
    if names == set(BINARY_HEADER):
        return "binary", "binary", ["benign", "malignant"], "image"  # benign is derived below
    if "image_id" in names:
        if {f"p_{c}" for c in CLASSES} <= names:
            return "benchbox", "multiclass", [f"p_{c}" for c in CLASSES], "image_id"
        if {"p_benign", "p_malignant"} <= names:
            return "benchbox", "binary", ["p_benign", "p_malignant"], "image_id"
    raise BenchboxError(f"{path}: header {','.join(columns)} is none of the layouts benchbox scores: {LAYOUTS}. "
                        "Rename the columns to one of them.")


def read_predictions_file(path: str | Path) -> PredictionsFile:
    """The file's rows, checked: ids present and unique, every value a probability, rows that sum to 1,
    and scores rather than labels (AUC and calibration need scores)."""
    path = Path(path)
    if not path.is_file():
        raise BenchboxError(f"predictions file {path} does not exist.")
    try:
        frame = pd.read_csv(path, dtype={"image": str, "image_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        raise BenchboxError(f"{path} cannot be read as CSV ({type(error).__name__}: {error}).") from None
    layout, task, columns, id_column = _layout(path, [str(c) for c in frame.columns])
    ids = frame[id_column].fillna("").astype(str).str.strip().to_numpy()
    empty = ids == ""
    if empty.any():
        raise BenchboxError(f"{path}: empty {id_column} at {_lines(empty)}; every row needs its image id.")
    repeated = pd.Series(ids).duplicated(keep=False).to_numpy()
    if repeated.any():
        raise BenchboxError(f"{path}: image ids appear more than once, at {_lines(repeated, ids)}; "
                            "keep one row per image.")
    given = columns[1:] if layout == "binary" else columns
    values = frame[given].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    for j, column in enumerate(given):
        bad = ~np.isfinite(values[:, j])
        if bad.any():
            raise BenchboxError(f"{path}: column {column} holds a missing, NaN, infinite or non-numeric value at "
                                f"{_lines(bad, ids)}; every value must be a probability.")
        bad = (values[:, j] < 0) | (values[:, j] > 1)
        if bad.any():
            raise BenchboxError(f"{path}: column {column} holds values outside [0, 1] at {_lines(bad, ids)}; "
                                "write probabilities (apply a softmax or sigmoid to logits).")
    if layout == "binary":
        values = np.column_stack([1.0 - values[:, 0], values[:, 0]])
    else:
        sums = values.sum(axis=1)
        bad = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
        if bad.any():
            shown = ", ".join(f"{sums[i]:.6g}" for i in np.flatnonzero(bad)[:SHOWN])
            raise BenchboxError(f"{path}: rows at {_lines(bad, ids)} do not sum to 1 (sums {shown}; tolerance "
                                f"{ROW_SUM_TOLERANCE:g}, so write at least 6 decimals). Apply a softmax over "
                                f"the class columns, or divide each row by its sum.")
    if len(values) > 1 and np.isin(values, (0.0, 1.0)).all():
        raise BenchboxError(f"{path}: every value is 0 or 1, so these look like labels (one-hot or hard "
                            "decisions), not probabilities; benchbox needs the model's scores to compute AUC "
                            "and calibration. Write the predicted probabilities.")
    split = frame["split"].astype(str).to_numpy() if layout == "benchbox" and "split" in frame else None
    return PredictionsFile(path, layout, task, ids, values, split)
