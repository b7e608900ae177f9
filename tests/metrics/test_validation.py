"""Prediction checks: each problem is refused with a message naming the method, the rows and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from benchbox.errors import BenchboxError
from benchbox.metrics import evaluate, validate_predictions


def softmax_rows(n, k=7, seed=0):
    p = np.random.default_rng(seed).random((n, k))
    return p / p.sum(axis=1, keepdims=True)


def test_valid_predictions_pass():
    ids = [f"ISIC_{i}" for i in range(10)]
    validate_predictions("msfa", softmax_rows(10), "multiclass", ids, list(reversed(ids)))
    validate_predictions("recall_ensemble", softmax_rows(10, 2), "binary")


def test_wrong_shape_names_the_expected_columns():
    with pytest.raises(BenchboxError, match=r"method 'msfa': predictions have shape \(10, 6\).*N x 7.*'akiec'"):
        validate_predictions("msfa", softmax_rows(10, 6), "multiclass")
    with pytest.raises(BenchboxError, match=r"N x 2 .*\['benign', 'malignant'\]"):
        validate_predictions("xception", softmax_rows(10, 7), "binary")


def test_nan_rows_are_listed_with_their_ids():
    proba = softmax_rows(12)
    proba[[3, 7], 2] = np.nan
    proba[9, 0] = np.inf
    ids = [f"img{i}" for i in range(12)]
    with pytest.raises(BenchboxError, match=r"'dual_task': rows 3 \(img3\), 7 \(img7\), 9 \(img9\) hold NaN or Inf"):
        validate_predictions("dual_task", proba, "multiclass", ids)


def test_logits_are_refused_with_the_softmax_fix():
    logits = np.random.default_rng(1).normal(size=(5, 7))
    with pytest.raises(BenchboxError, match="outside \\[0, 1\\].*apply a softmax"):
        validate_predictions("resnet50", logits, "multiclass")


def test_rows_must_sum_to_one_within_1e_4():
    proba = softmax_rows(8)
    proba[2] *= 1 + 5e-5  # inside the tolerance
    validate_predictions("msfa", proba, "multiclass")
    proba[[4, 5]] *= 0.9
    with pytest.raises(BenchboxError, match=r"rows 4, 5 do not sum to 1 \(tolerance 0.0001; sums 0.9, 0.9\)"):
        validate_predictions("msfa", proba, "multiclass")


def test_ids_missing_extra_or_duplicated_against_the_split():
    expected = ["a", "b", "c", "d"]
    proba = softmax_rows(4)
    with pytest.raises(BenchboxError, match="image id\\(s\\) b appear more than once"):
        validate_predictions("m", proba, "multiclass", ["a", "b", "b", "c"], expected)
    with pytest.raises(BenchboxError, match="1 image\\(s\\) of the split have no prediction \\(d\\)"):
        validate_predictions("m", proba, "multiclass", ["a", "b", "c", "e"], expected)
    with pytest.raises(BenchboxError, match="1 predicted image\\(s\\) are not in the split \\(e\\)"):
        validate_predictions("m", proba, "multiclass", ["a", "b", "c", "e"], ["a", "b", "c"])
    with pytest.raises(BenchboxError, match="4 prediction rows but 3 image ids"):
        validate_predictions("m", proba, "multiclass", ["a", "b", "c"], expected)


def test_evaluate_checks_labels_lesions_and_attributes():
    proba = softmax_rows(6)
    lesions = np.array(["l1", "l1", "l2", "l3", "l4", "l5"])
    with pytest.raises(BenchboxError, match="labels must be integer indices 0..6"):
        evaluate("multiclass", np.array([0, 1, 2, 3, 4, 7]), proba, lesions, method="msfa")
    with pytest.raises(BenchboxError, match="lesion id missing in row 2"):
        evaluate("multiclass", np.arange(6), proba, np.array(["l1", "l1", None, "l3", "l4", "l5"], dtype=object))
    with pytest.raises(BenchboxError, match="subgroup attribute 'sex' has 5 values for 6 images"):
        evaluate("multiclass", np.arange(6), proba, lesions, {"sex": np.array(["m"] * 5)})
    with pytest.raises(BenchboxError, match="unknown task 'ternary'"):
        evaluate("ternary", np.arange(6), proba, lesions)
