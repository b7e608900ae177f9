"""ISIC 2018 test part, scored the official way: ISIC_0035068 stays in the data but not in the test metrics.

The official scorer (isic-challenge-scoring, load_csv.parse_truth_csv) hard-codes weight 0 for
that image. The shared sample does not hold it, so the fixture is a tiny official-layout test
part built here, with planted predictions whose balanced accuracy moves when that image counts.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchbox.data.isic2018 import load_isic2018, officially_scored
from benchbox.labels import CLASSES, ISIC_COLUMNS
from benchbox.runner.job import isic_submission, score, unscored_ids
from benchbox.runner import pooling

# 12 test images: MEL x3 (ISIC_0035068 is the third), NV x3, BCC x2, one each of AKIEC, BKL, DF, VASC
# (the scorer needs every class present).
IMAGES = ["ISIC_0035060", "ISIC_0035061", "ISIC_0035068", "ISIC_0035070", "ISIC_0035071", "ISIC_0035072",
          "ISIC_0035080", "ISIC_0035081", "ISIC_0035090", "ISIC_0035091", "ISIC_0035092", "ISIC_0035093"]
TRUTH = ["MEL", "MEL", "MEL", "NV", "NV", "NV", "BCC", "BCC", "AKIEC", "BKL", "DF", "VASC"]
# Predicted classes: the two scored MEL images right, ISIC_0035068 wrong (NV); NV 2 of 3; BCC 1 of 2;
# the others right.
PREDICTED = ["MEL", "MEL", "NV", "NV", "NV", "MEL", "BCC", "NV", "AKIEC", "BKL", "DF", "VASC"]
OFFICIAL = (1 + 2 / 3 + 1 / 2 + 4) / 7  # balanced accuracy with ISIC_0035068 left out
ALL_IMAGES = (2 / 3 + 2 / 3 + 1 / 2 + 4) / 7  # what counting it would give


def _official_test_part(root):
    folder = root / "ISIC2018_Task3_Test_Input"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for image in IMAGES:
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{image}.jpg")
    onehot = pd.DataFrame(0.0, index=range(len(IMAGES)), columns=list(ISIC_COLUMNS))
    for row, label in enumerate(TRUTH):
        onehot.loc[row, label] = 1.0
    onehot.insert(0, "image", IMAGES)
    path = root / "ISIC2018_Task3_Test_GroundTruth.csv"
    onehot.to_csv(path, index=False)
    return path


def _predictions(manifest):
    proba = np.full((len(IMAGES), len(CLASSES)), 0.02)
    for row, label in enumerate(PREDICTED):
        proba[row, CLASSES.index(label.lower())] = 0.88
    frame = pd.DataFrame({"image_id": IMAGES, "split": "test", "y_true": [t.lower() for t in TRUTH],
                          "lesion_id": manifest.set_index("image_id").loc[IMAGES, "lesion_id"].to_numpy()})
    for i, c in enumerate(CLASSES):
        frame[f"p_{c}"] = proba[:, i]
    frame["p_malignant"] = proba[:, [CLASSES.index(c) for c in ("mel", "bcc", "akiec")]].sum(axis=1)
    return frame


def test_the_image_stays_in_the_data_but_not_in_scoring(tmp_path):
    _official_test_part(tmp_path)
    dataset = load_isic2018(tmp_path, progress=False)
    manifest = dataset.manifest.set_index("image_id")
    assert len(manifest) == 12 and manifest.loc["ISIC_0035068", "official_split"] == "test"
    assert not manifest.loc["ISIC_0035068", "scored"] and manifest.drop("ISIC_0035068")["scored"].all()
    assert any(n.startswith("official scoring: test image ISIC_0035068 is left out of scoring") for n in dataset.notes)
    np.testing.assert_array_equal(officially_scored(IMAGES), [i != "ISIC_0035068" for i in IMAGES])


def test_test_metrics_leave_it_out_and_the_submission_keeps_it(tmp_path):
    _official_test_part(tmp_path)
    manifest = load_isic2018(tmp_path, progress=False).manifest
    frame = _predictions(manifest)
    frame = pd.concat([frame, frame.assign(split="val", image_id=[f"v{i}" for i in range(12)])], ignore_index=True)
    metrics, _ = score("planted", "multiclass", frame, pd.concat([manifest, manifest.assign(
        image_id=[f"v{i}" for i in range(12)], official_split="val", scored=True)], ignore_index=True), 0.5)
    # by hand, without ISIC_0035068: MEL 2/2, NV 2/3, BCC 1/2, the other four 1/1; with it MEL would be 2/3
    assert metrics["balanced_accuracy"]["value"] == pytest.approx(OFFICIAL, abs=1e-12)
    assert metrics["balanced_accuracy"]["n"] == 11
    assert len(isic_submission(frame)) == 12  # the official scorer requires every test row
    job = tmp_path / "job"  # seed pooling and the paired tests read a job's test rows the same way
    job.mkdir()
    frame.to_csv(job / "predictions.csv", index=False)
    pooled = pooling.test_predictions(job, unscored_ids(manifest))
    assert len(pooled) == 11 and "ISIC_0035068" not in set(pooled["image_id"])


def test_matches_the_official_scorer(tmp_path):
    scoring = pytest.importorskip("isic_challenge_scoring.classification")
    truth_path = _official_test_part(tmp_path)
    manifest = load_isic2018(tmp_path, progress=False).manifest
    submission = isic_submission(_predictions(manifest)).to_csv(index=False)
    if not hasattr(pd.DataFrame, "applymap"):  # the scorer's parse_csv predates pandas 3's rename to `map`
        pd.DataFrame.applymap = pd.DataFrame.map
        try:
            result = scoring.ClassificationScore.from_stream(
                truth_path.open(), io.StringIO(submission), scoring.ClassificationMetric.BALANCED_ACCURACY)
        finally:
            del pd.DataFrame.applymap
    else:
        result = scoring.ClassificationScore.from_stream(
            truth_path.open(), io.StringIO(submission), scoring.ClassificationMetric.BALANCED_ACCURACY)
    assert result.overall == pytest.approx(OFFICIAL, abs=1e-12) and OFFICIAL != pytest.approx(ALL_IMAGES)
