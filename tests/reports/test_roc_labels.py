"""The ROC legends give the AUC of the curve drawn (the first seed's predictions), checked against
scikit-learn on predictions.csv, with the board's seed mean beside it when there are several seeds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from runfolder_builder import build_run
from sklearn.metrics import roc_auc_score

from benchbox.labels import MALIGNANT_CLASSES
from benchbox.reports import plots
from benchbox.reports.runfolder import read_run


@pytest.fixture
def legends(tmp_path, monkeypatch):
    """Draw both ROC plots of a two-seed run; return (run folder, {plot file name: legend texts})."""
    run_dir = build_run(tmp_path, seeds=(0, 1))
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda figure, path: drawn.setdefault(
        path.name, [t.get_text() for t in figure.axes[0].get_legend().get_texts()]))
    run = read_run(run_dir)
    for draw, board in ((plots.roc_binary, "binary"), (plots.roc_multiclass, "multiclass")):
        methods = [m for m in run.methods if run.done_jobs(m) and (board == "binary" or run.done_jobs(m)[0].task == "multiclass")]
        draw(run, methods, tmp_path / f"roc_{board}.png")
    return run_dir, drawn


def test_each_curve_is_labelled_with_its_own_auc_and_the_seed_mean(legends):
    run_dir, drawn = legends
    checked = 0
    for text in drawn["roc_binary.png"][1:]:  # after "chance"
        method = text.split(" (")[0]
        frame = pd.read_csv(run_dir / method / "seed0" / "predictions.csv")
        test = frame[frame["split"] == "test"]
        curve_auc = roc_auc_score(test["y_true"].isin([*MALIGNANT_CLASSES, "malignant"]), test["p_malignant"])
        mean = json.loads((run_dir / method / "metrics.json").read_text())["metrics"]["binary.auc"]["value"]
        assert text == f"{method} (AUC {curve_auc:.3f}; 2-seed mean {mean:.3f})"
        checked += 1
    assert checked >= 2


def test_the_multiclass_legend_gives_the_macro_auc_of_the_first_seed(legends):
    run_dir, drawn = legends
    for text in drawn["roc_multiclass.png"][1:]:
        method = text.split(" (")[0]
        frame = pd.read_csv(run_dir / method / "seed0" / "predictions.csv")
        test = frame[frame["split"] == "test"]
        classes = [c for c in sorted(test["y_true"].unique()) if f"p_{c}" in test]
        macro = np.mean([roc_auc_score(test["y_true"] == c, test[f"p_{c}"]) for c in classes])
        assert text.startswith(f"{method} (macro AUC {macro:.3f}; 2-seed mean ")
