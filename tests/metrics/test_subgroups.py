"""Subgroups: attribute helpers, per-group values and gaps against scikit-learn, and the NaN rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from benchbox.errors import BenchboxError
from benchbox.labels import MALIGNANT_INDICES
from benchbox.metrics import age_band, evaluate, group_key, ita_light_dark, subgroup_attributes


def test_age_bands_and_light_dark():
    bands = age_band(np.array([0, 29, 30, 44.9, 45, 60, 74, 75, 85, np.nan]), [30, 45, 60, 75])
    assert bands.tolist() == ["0-29", "0-29", "30-44", "30-44", "45-59", "60-74", "60-74", "75+", "75+", "unknown"]
    assert ita_light_dark(np.array([60.0, 28.0001, 28.0, -40.0, np.nan]), 28).tolist() == [
        "light", "light", "dark", "dark", "unknown"
    ]


def test_group_keys_are_name_safe_and_missing_values_form_no_group():
    assert group_key("lower extremity") == "lower_extremity"
    assert group_key("75+") == "75+"
    assert group_key("vidir_molemax") == "vidir_molemax"
    assert group_key("a.b") == "a_b"  # dots would break the dotted metric names
    for missing in ("unknown", "", None, np.nan, pd.NA, "NaN", " Unknown "):
        assert group_key(missing) is None


def test_subgroup_attributes_from_a_manifest():
    manifest = pd.DataFrame(
        {"age": [25.0, np.nan, 80.0], "ita": [50.0, 10.0, np.nan], "sex": ["male", "female", "unknown"]}
    )
    out = subgroup_attributes(manifest, ["age_band", "ita_light_dark", "sex"], [30, 45, 60, 75], 28)
    assert out["age_band"].tolist() == ["0-29", "unknown", "75+"]
    assert out["ita_light_dark"].tolist() == ["light", "dark", "unknown"]
    assert out["sex"].tolist() == ["male", "female", "unknown"]
    with pytest.raises(BenchboxError, match="not a manifest column"):
        subgroup_attributes(manifest, ["skin_type"], [30], 28)


@pytest.fixture
def grouped(random_multiclass, make_config):
    y, proba, lesions = random_multiclass(9, n=600)
    rng = np.random.default_rng(109)  # not 9: the same stream would tie the sites to the labels
    site = rng.choice(["north", "south", "east", "unknown"], size=len(y), p=[0.45, 0.35, 0.15, 0.05])
    site[:20] = "tiny"  # a group below the minimum size (30)
    result = evaluate("multiclass", y, proba, lesions, {"site": site}, threshold=0.4, config=make_config(200))
    return y, proba, site, result


def test_group_values_and_gaps_match_sklearn_on_the_subsets(grouped):
    y, proba, site, result = grouped
    malignant = np.isin(y, MALIGNANT_INDICES).astype(int)
    score = proba[:, list(MALIGNANT_INDICES)].sum(axis=1)

    def reference(mask):
        return {
            "mcc": sk.matthews_corrcoef(y[mask], proba[mask].argmax(axis=1)),
            "balanced_accuracy": sk.balanced_accuracy_score(y[mask], proba[mask].argmax(axis=1)),
            "binary.auc": sk.roc_auc_score(malignant[mask], score[mask]),
            "binary.sensitivity": sk.recall_score(malignant[mask], score[mask] >= 0.4),
        }

    known = site != "unknown"
    values = {}
    for group in ("north", "south", "east"):
        inside, rest = site == group, known & (site != group)
        for metric, expected in reference(inside).items():
            entry = result[f"subgroup.site.{metric}.{group}"]
            assert entry["value"] == pytest.approx(expected, abs=1e-9), (metric, group)
            assert entry["n"] == inside.sum()
            gap = result[f"subgroup.site.{metric}.gap.{group}"]
            assert gap["value"] == pytest.approx(expected - reference(rest)[metric], abs=1e-9), (metric, group)
            assert gap["higher_is_better"] is None
            values.setdefault(metric, []).append(expected)
    for metric, per_group in values.items():
        spread = result[f"subgroup.site.{metric}.gap"]
        assert spread["value"] == pytest.approx(max(per_group) - min(per_group), abs=1e-9)
        assert spread["higher_is_better"] is False
        assert spread["ci_low"] <= spread["value"] <= spread["ci_high"]
    assert result["subgroup.site.binary.auc.north"]["higher_is_better"] is True
    assert not any(".unknown" in name for name in result)


def test_small_group_is_nan_with_a_reason_and_left_out_of_the_spread(grouped):
    _, _, _, result = grouped
    entry = result["subgroup.site.binary.auc.tiny"]
    assert np.isnan(entry["value"]) and np.isnan(entry["ci_low"])
    assert entry["reason"] == "group 'tiny' has 20 images, fewer than the minimum 30"
    assert np.isnan(result["subgroup.site.binary.auc.gap.tiny"]["value"])
    assert np.isfinite(result["subgroup.site.binary.auc.gap"]["value"])


def test_single_class_group_and_all_unknown_attribute_give_nan_and_reasons(make_config):
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(40, int), rng.integers(0, 2, 80)]
    score = np.clip(0.3 * y + rng.random(len(y)) * 0.7, 0, 1)
    attributes = {
        "sex": np.r_[["female"] * 40, ["male"] * 80],  # every female image is benign
        "source": np.full(len(y), "unknown"),
    }
    result = evaluate("binary", y, np.c_[1 - score, score], np.arange(len(y)), attributes, config=make_config(100))
    female = result["subgroup.sex.binary.auc.female"]
    assert np.isnan(female["value"]) and female["reason"] == "group 'female' holds only class 'benign'"
    assert np.isnan(result["subgroup.sex.binary.specificity.gap.male"]["value"])  # its rest is one class
    assert "holds only class" in result["subgroup.sex.binary.specificity.gap.male"]["reason"]
    spread = result["subgroup.source.binary.auc.gap"]
    assert np.isnan(spread["value"]) and spread["reason"].startswith("fewer than two groups")
