"""Plot inputs: the test-split rows, truth in each task's label space, confusion counts, grids."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image
from runfolder_builder import BINARY_THRESHOLD, N_TEST, build_run

from benchbox.labels import CLASSES
from benchbox.reports import plots
from benchbox.reports.runfolder import read_run


def test_test_predictions_use_the_test_split_in_the_jobs_label_space(tmp_path):
    run_dir = build_run(tmp_path, methods=("msfa", "xception"), failed=())
    run = read_run(run_dir)
    frame, truth = plots.test_predictions(run.done_jobs("msfa")[0])
    assert len(frame) == N_TEST and set(frame["split"]) == {"test"}
    assert set(truth) == set(CLASSES)
    raw = pd.read_csv(run_dir / "xception" / "seed0" / "predictions.csv")
    raw = raw[raw["split"] == "test"]
    _, binary_truth = plots.test_predictions(run.done_jobs("xception")[0])
    expected = np.where(raw["y_true"].isin(["mel", "bcc", "akiec"]), "malignant", "benign")
    assert (binary_truth == expected).all() and set(binary_truth) == {"benign", "malignant"}


def test_binary_confusion_counts_use_the_operating_threshold(tmp_path):
    run_dir = build_run(tmp_path, methods=("msfa", "xception"), failed=())
    run = read_run(run_dir)
    matrix, labels, note = plots.confusion_counts(run.done_jobs("xception")[0])
    raw = pd.read_csv(run_dir / "xception" / "seed0" / "predictions.csv")
    raw = raw[raw["split"] == "test"]
    truth = raw["y_true"].isin(["mel", "bcc", "akiec"]).to_numpy()
    predicted = raw["p_malignant"].to_numpy() >= BINARY_THRESHOLD
    assert labels == ["benign", "malignant"] and note == f", threshold {BINARY_THRESHOLD:.2f}"
    assert matrix.tolist() == [[int((~truth & ~predicted).sum()), int((~truth & predicted).sum())],
                               [int((truth & ~predicted).sum()), int((truth & predicted).sum())]]
    seven, seven_labels, _ = plots.confusion_counts(run.done_jobs("msfa")[0])
    assert seven_labels == list(CLASSES) and seven.sum() == N_TEST  # metrics.json's own matrix


def test_is_malignant_for_seven_class_and_binary_labels():
    truth = np.array(["mel", "nv", "bcc", "akiec", "df", "malignant", "benign"])
    assert plots.is_malignant(truth).tolist() == [True, False, True, True, False, True, False]


def test_saliency_grid_has_a_column_per_map(tmp_path):
    run_dir = build_run(tmp_path, methods=("xception",), failed=())
    job = read_run(run_dir).done_jobs("xception")[0]
    path = plots.saliency_grid(job, tmp_path / "grid.png")
    with Image.open(path) as image:
        width, height = image.size
    # image + gradcam + smoothgrad + gaussian columns, 4 rows: wider than tall only by the colour bar
    assert 0.8 < width / height < 1.3
    job.explanations_path.unlink()
    assert plots.saliency_grid(job, tmp_path / "none.png") is None
