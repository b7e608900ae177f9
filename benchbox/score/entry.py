"""Turn a checked predictions file into a run folder entry, scored exactly as a hosted method's
predictions are (runner/job.py `score`): same split, same test images, same metrics, intervals,
subgroups and operating-point rule. Only predictions exist, so there is no efficiency or
explanation stage.

The operating point of the binary metrics comes from validation predictions (the `val` rows of a
benchbox predictions.csv, or `--val FILE`), by the rule hosted methods use (Youden's J on
validation), else the stated default 0.5; never from the test labels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import BenchboxError
from ..labels import CLASSES, MALIGNANT_INDICES
from .predictions_file import SHOWN, PredictionsFile

DEFAULT_THRESHOLD = 0.5  # the operating point without validation predictions
SEED = 0  # an outside model is one trained model: one "seed" folder


@dataclass
class Scored:
    """An outside model's entry: the predictions frame (predictions.csv layout) and its metrics.json."""

    name: str
    task: str
    frame: pd.DataFrame
    metrics: dict
    subset: dict | None  # when --allow-subset scored fewer images than the test part


def _some(ids) -> str:
    ids = sorted(ids)
    return ", ".join(ids[:SHOWN]) + (f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")


def rows_of_part(file: PredictionsFile, part: str, wanted: pd.DataFrame, where: str,
                 allow_subset: bool = False, left_out: frozenset[str] = frozenset()) -> tuple[np.ndarray, np.ndarray]:
    """(image ids, proba) of the file's rows for one split part, checked against the part's images.

    An id the part lacks is refused (it is another part's image or another dataset's), except the
    `left_out` ones (dropped from the split by --drop-leaking), which are skipped; a missing
    id is refused unless `allow_subset`, because a model scored on the easy images only would
    rank above the others on a different test."""
    rows = np.ones(len(file.image_ids), bool) if file.split is None else file.split == part
    rows &= ~np.isin(file.image_ids, list(left_out))
    ids, proba = file.image_ids[rows], file.proba[rows]
    expected = set(wanted["image_id"])
    extra = sorted(set(ids) - expected)
    if extra:
        raise BenchboxError(f"{file.path}: {len(extra)} image id(s) are not in the {part} part of {where}: "
                            f"{_some(extra)}. Score only the {part} images of this split (or pass the --split "
                            "your model was evaluated on).")
    missing = expected - set(ids)
    if missing and not allow_subset:
        raise BenchboxError(f"{file.path}: {len(missing)} of the {len(expected)} {part} images of {where} have no "
                            f"prediction: {_some(missing)}. Predict every {part} image, or pass --allow-subset to "
                            "score the ones given (the run folder then records the subset).")
    return ids, proba


def _frame(ids: np.ndarray, proba: np.ndarray, task: str, part: str, manifest: pd.DataFrame) -> pd.DataFrame:
    """Rows in the predictions.csv layout of runner/job.py `predictions_frame`."""
    rows = manifest.loc[ids]
    frame = pd.DataFrame({"image_id": ids, "lesion_id": rows["lesion_id"].to_numpy(), "split": part,
                          "y_true": rows["dx"].to_numpy()})
    classes = list(CLASSES) if task == "multiclass" else ["benign", "malignant"]
    frame["y_pred"] = [classes[i] for i in proba.argmax(axis=1)]
    for j, name in enumerate(classes):
        frame[f"p_{name}"] = proba[:, j]
    if task == "multiclass":  # the same sum, in the same order, as a hosted job's
        frame["p_malignant"] = proba[:, list(MALIGNANT_INDICES)].sum(axis=1)
    return frame


def score_predictions(name: str, file: PredictionsFile, split_table: pd.DataFrame, manifest: pd.DataFrame,
                      where: str, val_file: PredictionsFile | None = None, allow_subset: bool = False) -> Scored:
    """Score an outside model's test predictions against `split_table` (the run's evaluated images)."""
    from ..runner.job import score

    by_id = manifest.set_index("image_id")
    from ..splits import DROPPED

    test = split_table[split_table["split"] == "test"]
    dropped = frozenset(split_table.loc[split_table["split"] == DROPPED, "image_id"])
    ids, proba = rows_of_part(file, "test", test, where, allow_subset, dropped)
    frames = [_frame(ids, proba, file.task, "test", by_id)]
    validation = val_file if val_file is not None else (file if file.split is not None else None)
    if validation is not None:
        if validation.task != file.task:
            raise BenchboxError(f"{validation.path} holds {validation.task} predictions and {file.path} "
                                f"{file.task} ones; the validation predictions must come from the same model.")
        val_ids, val_proba = rows_of_part(validation, "val", split_table[split_table["split"] == "val"], where,
                                          allow_subset=True, left_out=dropped)
        if len(val_ids):
            frames.insert(0, _frame(val_ids, val_proba, file.task, "val", by_id))
    frame = pd.concat(frames, ignore_index=True)
    has_val = (frame["split"] == "val").any()
    metrics, extra = score(name, file.task, frame, manifest, None if has_val else DEFAULT_THRESHOLD)
    if not has_val:
        extra["threshold_rule"] = f"default {DEFAULT_THRESHOLD} (no validation predictions)"
    classes = list(CLASSES) if file.task == "multiclass" else ["benign", "malignant"]
    subset = None
    if len(ids) < len(test):
        subset = {"scored": int(len(ids)), "test_images": int(len(test)),
                  "missing": sorted(set(test["image_id"]) - set(ids))}
    record = {"method": name, "task": file.task, "seed": SEED, "classes": classes, "metrics": metrics, **extra,
              "scored_from": {"path": str(file.path), "sha256": file_digest(file.path), "layout": file.layout,
                              "validation": str(validation.path) if validation is not None and has_val else None},
              "subset": subset}
    return Scored(name, file.task, frame, record, subset)


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
