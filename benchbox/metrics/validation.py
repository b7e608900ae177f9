"""Checks on a method's predictions before any metric: a wrong shape, NaN, logits instead of
probabilities, rows that are not a distribution, or a prediction set that does not match the
split would otherwise give a plausible-looking but meaningless number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import BenchboxError
from ..labels import BINARY_CLASSES, CLASSES

ROW_SUM_TOLERANCE = 1e-4
TASK_CLASSES = {"multiclass": CLASSES, "binary": BINARY_CLASSES}
SHOWN = 5  # rows or ids quoted in a message


def validate_predictions(
    method: str,
    proba: np.ndarray,
    task: str,
    image_ids: Sequence[str] | None = None,
    expected_ids: Sequence[str] | None = None,
) -> None:
    """Raise BenchboxError unless `proba` is N x C probabilities, rows summing to 1, for exactly the expected ids.

    C is 7 (`benchbox.labels.CLASSES`) for "multiclass" and 2 (benign, malignant) for "binary".
    """
    classes = _task_classes(task)
    proba = np.asarray(proba)
    if proba.ndim != 2 or proba.shape[1] != len(classes) or not np.issubdtype(proba.dtype, np.number):
        raise BenchboxError(
            f"method {method!r}: predictions have shape {proba.shape} ({proba.dtype}); a {task} method must "
            f"return N x {len(classes)} numeric probabilities in the column order {list(classes)}. "
            "Fix the method's predict_proba."
        )
    ids = None if image_ids is None else np.asarray(image_ids).astype(str)
    if ids is not None and len(ids) != len(proba):
        raise BenchboxError(
            f"method {method!r}: {len(proba)} prediction rows but {len(ids)} image ids; give one id per row."
        )
    proba = proba.astype(np.float64)
    bad = ~np.isfinite(proba).all(axis=1)
    if bad.any():
        raise BenchboxError(
            f"method {method!r}: {_rows(bad, ids)} hold NaN or Inf probabilities. Fix the model's output "
            "(an overflow or a division by zero before the softmax) and predict again."
        )
    bad = ((proba < 0) | (proba > 1)).any(axis=1)
    if bad.any():
        raise BenchboxError(
            f"method {method!r}: {_rows(bad, ids)} hold values outside [0, 1]. predict_proba must return "
            "probabilities: apply a softmax to the logits."
        )
    sums = proba.sum(axis=1)
    bad = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
    if bad.any():
        first = np.flatnonzero(bad)[:SHOWN]
        shown = ", ".join(f"{sums[i]:.6g}" for i in first)
        raise BenchboxError(
            f"method {method!r}: {_rows(bad, ids)} do not sum to 1 (tolerance {ROW_SUM_TOLERANCE:g}; sums {shown}). "
            "Apply a softmax over the class axis, or divide each row by its sum."
        )
    if ids is not None and expected_ids is not None:
        _check_ids(method, ids, np.asarray(expected_ids).astype(str))


def validate_inputs(
    method: str,
    task: str,
    y_true: np.ndarray,
    proba: np.ndarray,
    clusters: np.ndarray,
    attributes: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Check the arrays that `evaluate` receives agree with each other and with the task."""
    validate_predictions(method, proba, task)
    n = len(proba)
    classes = _task_classes(task)
    y_true = np.asarray(y_true)
    if len(y_true) != n:
        raise BenchboxError(f"method {method!r}: {n} predictions but {len(y_true)} labels; they must align row by row.")
    if n == 0:
        raise BenchboxError(f"method {method!r}: no predictions to evaluate.")
    integer = np.issubdtype(y_true.dtype, np.integer) or y_true.dtype == bool
    if not integer or y_true.min() < 0 or y_true.max() >= len(classes):
        raise BenchboxError(
            f"method {method!r}: labels must be integer indices 0..{len(classes) - 1} into {list(classes)}; "
            f"got dtype {y_true.dtype}, values {np.unique(y_true)[:SHOWN].tolist()}."
        )
    clusters = np.asarray(clusters, dtype=object)
    if len(clusters) != n:
        raise BenchboxError(f"method {method!r}: {n} predictions but {len(clusters)} lesion ids.")
    missing = np.array([_is_missing(c) for c in clusters])
    if missing.any():
        raise BenchboxError(
            f"method {method!r}: lesion id missing in {_rows(missing, None)}; every image needs its lesion id "
            "(use the image id for an image whose lesion is unknown) so the bootstrap can resample lesions."
        )
    for name, values in (attributes or {}).items():
        if len(values) != n:
            raise BenchboxError(
                f"method {method!r}: subgroup attribute {name!r} has {len(values)} values for {n} images."
            )


def _task_classes(task: str) -> tuple[str, ...]:
    if task not in TASK_CLASSES:
        raise BenchboxError(f"unknown task {task!r}; expected one of {list(TASK_CLASSES)}")
    return TASK_CLASSES[task]


def _check_ids(method: str, ids: np.ndarray, expected: np.ndarray) -> None:
    unique, counts = np.unique(ids, return_counts=True)
    duplicated = unique[counts > 1]
    if len(duplicated):
        raise BenchboxError(
            f"method {method!r}: image id(s) {_ids(duplicated)} appear more than once in the predictions; "
            "predict each image of the split exactly once."
        )
    missing = np.setdiff1d(expected, ids)
    if len(missing):
        raise BenchboxError(
            f"method {method!r}: {len(missing)} image(s) of the split have no prediction ({_ids(missing)}); "
            "predict every image of the split."
        )
    extra = np.setdiff1d(ids, expected)
    if len(extra):
        raise BenchboxError(
            f"method {method!r}: {len(extra)} predicted image(s) are not in the split ({_ids(extra)}); "
            "predict only the split's images, with the manifest's image ids."
        )


def _rows(bad: np.ndarray, ids: np.ndarray | None) -> str:
    index = np.flatnonzero(bad)
    shown = ", ".join(str(i) if ids is None else f"{i} ({ids[i]})" for i in index[:SHOWN])
    more = f" and {len(index) - SHOWN} more" if len(index) > SHOWN else ""
    return f"row{'s' if len(index) > 1 else ''} {shown}{more}"


def _ids(values: np.ndarray) -> str:
    more = f" and {len(values) - SHOWN} more" if len(values) > SHOWN else ""
    return ", ".join(map(str, values[:SHOWN])) + more


def _is_missing(value: object) -> bool:
    return (pd.api.types.is_scalar(value) and pd.isna(value)) or str(value).strip() == ""
