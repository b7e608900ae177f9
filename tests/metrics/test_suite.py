"""evaluate / evaluate_means: the entry schema, reproducibility, and restricting the metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchbox.errors import BenchboxError
from benchbox.metrics import evaluate, metric_names
from benchbox.metrics.suite import evaluate_means

KEYS = {"value", "ci_low", "ci_high", "n", "higher_is_better", "ci_method", "reason"}


def test_every_metric_of_the_task_is_returned_with_the_entry_schema(random_multiclass, make_config):
    y, proba, lesions = random_multiclass(0)
    result = evaluate("multiclass", y, proba, lesions, {"sex": np.where(np.arange(len(y)) % 2, "male", "female")},
                      config=make_config(100))
    assert set(metric_names("multiclass")) <= set(result)
    assert "subgroup.sex.mcc.worst_gap" in result and "subgroup.sex.binary.auc.female" in result
    for name, entry in result.items():
        # a worst-gap entry also names its group
        assert set(entry) == KEYS | ({"group"} if name.endswith(".worst_gap") else set()), name
        assert entry["ci_method"] in ("bca", "percentile", None)
    json.dumps(result)  # plain data, ready for metrics.json
    assert result["mcc"]["ci_low"] < result["mcc"]["value"] < result["mcc"]["ci_high"]
    assert result["mcc"]["n"] == len(y)


def test_binary_task_returns_only_binary_metrics(make_config):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    p = rng.random(100)
    result = evaluate("binary", y, np.c_[1 - p, p], np.arange(100), config=make_config(0))
    assert set(result) == set(metric_names("binary"))
    assert all(name.startswith("binary.") for name in result)
    assert result["binary.auc"]["reason"] == "no bootstrap resamples requested"


def test_same_seed_same_intervals_other_seed_other_intervals(random_multiclass, make_config):
    y, proba, lesions = random_multiclass(1)
    first = evaluate("multiclass", y, proba, lesions, config=make_config(200, seed=5), metrics=["mcc", "auc_macro"])
    again = evaluate("multiclass", y, proba, lesions, config=make_config(200, seed=5), metrics=["mcc", "auc_macro"])
    other = evaluate("multiclass", y, proba, lesions, config=make_config(200, seed=6), metrics=["mcc", "auc_macro"])
    assert first == again
    assert set(first) == {"mcc", "auc_macro"}
    assert first["mcc"]["value"] == other["mcc"]["value"] and first["mcc"]["ci_low"] != other["mcc"]["ci_low"]


def test_unknown_metric_is_refused(random_multiclass):
    y, proba, lesions = random_multiclass(2)
    with pytest.raises(BenchboxError, match="not computed for binary methods"):
        evaluate("binary", (y < 3).astype(int), np.c_[1 - proba[:, 0], proba[:, 0]], lesions, metrics=["mcc"])


def test_evaluate_means_of_per_image_scores(make_config):
    rng = np.random.default_rng(3)
    iou = rng.random(50)
    pointing = (rng.random(50) < 0.7).astype(float)
    pointing[:5] = np.nan  # empty masks: undefined
    lesions = np.arange(50) // 3
    result = evaluate_means({"xai.gradcam.iou": iou, "xai.gradcam.pointing_game": pointing,
                             "xai.gradcam.deletion_auc": np.full(50, np.nan)}, lesions, make_config(200))
    assert result["xai.gradcam.iou"]["value"] == pytest.approx(iou.mean(), abs=1e-12)
    assert result["xai.gradcam.pointing_game"]["value"] == pytest.approx(np.nanmean(pointing), abs=1e-12)
    assert result["xai.gradcam.pointing_game"]["n"] == 45
    assert result["xai.gradcam.iou"]["higher_is_better"] is True
    assert result["xai.gradcam.deletion_auc"]["higher_is_better"] is False
    assert np.isnan(result["xai.gradcam.deletion_auc"]["value"])
    assert result["xai.gradcam.deletion_auc"]["reason"] == "the score is undefined (NaN) for every image"
