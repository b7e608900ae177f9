"""A leaky split runs only when asked (--allow-leaky-split), is stamped on run.json and every board,
and `measure_inflation` scores the leaky and the grouped-twin model on the same test images."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from benchbox.data.load import load_dataset
from benchbox.errors import BenchboxError
from benchbox.labels import MALIGNANT_CLASSES
from benchbox.planted.leakage import grouped_twin, measure_inflation
from benchbox.planted.validate import leaky_split, one_image_per_lesion
from benchbox.reports.runfolder import rerun_command
from benchbox.runner.config import RunConfig
from benchbox.runner.run import execute


def test_the_twin_moves_crossing_groups_to_their_latest_part_and_keeps_every_test_image():
    leaky = pd.DataFrame({"image_id": list("abcdefgh"),
                          "split": ["train", "test", "train", "val", "val", "test", "train", "dropped"]})
    groups = np.array(["L1", "L1", "L2", "L2", "L3", "L3", "L4", "L4"])
    twin = grouped_twin(leaky, groups)
    assert twin["split"].tolist() == ["test", "test", "val", "val", "test", "test", "train", "dropped"]
    assert twin["group_id"].tolist() == groups.tolist()
    assert set(leaky.loc[leaky["split"] == "test", "image_id"]) <= set(twin.loc[twin["split"] == "test", "image_id"])


@pytest.fixture(scope="module")
def leaky(tiny_synthderm, tmp_path_factory):
    """(dataset spec, leaky split path, lesions crossing parts counted here independently)."""
    spec = f"synthderm:{tiny_synthderm}"
    dataset = load_dataset(spec, progress=False)
    path = leaky_split(dataset, tmp_path_factory.mktemp("leaky") / "image_level.csv")
    table = pd.read_csv(path, dtype=str).set_index("image_id").loc[dataset.manifest["image_id"]]
    parts = pd.Series(table["split"].to_numpy()).groupby(dataset.manifest["lesion_id"].to_numpy()).nunique()
    return spec, path, int((parts > 1).sum())


def test_a_leaky_split_is_refused_without_the_flag(leaky, tmp_path):
    spec, path, crossing = leaky
    assert crossing > 0
    config = RunConfig(methods=["tiny_linear"], data=spec, split=str(path), profile="smoke", out=str(tmp_path / "run"))
    with pytest.raises(BenchboxError, match="--allow-leaky-split"):
        execute(config, progress=False)
    assert not (tmp_path / "run" / "run.json").exists()


def test_with_the_flag_the_run_is_recorded_and_every_section_stamped_leaky(leaky, tmp_path):
    spec, path, crossing = leaky
    out = tmp_path / "run"
    config = RunConfig(methods=["tiny_linear"], data=spec, split=str(path), profile="smoke", out=str(out),
                       allow_leaky_split=True)
    assert execute(config, progress=False) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["allow_leaky_split"] is True
    assert record["split"]["leak"]["lesions_crossing"] == crossing
    report = (out / "report" / "README.md").read_text().split("\n\n")
    sections = [i for i, part in enumerate(report) if part.startswith("## ")]
    assert sections and all(report[i + 1].startswith("> **LEAKY split") for i in sections)
    assert f"{crossing:,} lesion(s)" in report[sections[0] + 1]
    assert "--allow-leaky-split" in rerun_command(record["config"], out)
    # the flag changes the run's identity only when given
    assert config.run_id() != RunConfig(methods=["tiny_linear"], data=spec, split=str(path), profile="smoke").run_id()
    assert "allow_leaky_split" not in RunConfig(methods=["tiny_linear"]).identity()


def _auc(frame: pd.DataFrame, ids) -> float:
    rows = frame.set_index("image_id").loc[sorted(ids)]
    return roc_auc_score(rows["y_true"].isin(MALIGNANT_CLASSES), rows["p_malignant"])


def test_measured_inflation_is_leaky_minus_grouped_auc_on_the_shared_test_images(leaky, tmp_path, without_run_report):
    spec, path, _ = leaky
    config = RunConfig(methods=["tiny_linear"], data=spec, split=str(path), profile="quick", seeds=[0])
    result = measure_inflation(config, tmp_path, progress=False)
    assert result["failed"] == [] and result["leak"]["lesions_crossing"] > 0
    rows = {row["board"]: row for row in result["rows"]}
    assert set(rows) == {"binary", "multiclass"}
    frames = {arm: pd.read_csv(tmp_path / arm / "tiny_linear" / "seed0" / "predictions.csv", dtype={"image_id": str})
              for arm in ("leaky", "grouped")}
    tests = {arm: set(f.loc[f["split"] == "test", "image_id"]) for arm, f in frames.items()}
    assert tests["leaky"] <= tests["grouped"]  # the twin keeps every leaky test image in test
    binary = rows["binary"]
    assert binary["n"] == len(tests["leaky"])
    assert binary["value_a"] == pytest.approx(_auc(frames["leaky"], tests["leaky"]), abs=1e-12)
    assert binary["value_b"] == pytest.approx(_auc(frames["grouped"], tests["leaky"]), abs=1e-12)
    assert binary["diff"] == pytest.approx(binary["value_a"] - binary["value_b"], abs=1e-12)
    assert binary["ci_low"] <= binary["diff"] <= binary["ci_high"]


def test_with_one_image_per_lesion_the_twin_trains_on_the_same_images_and_nothing_is_inflated(tiny_synthderm, tmp_path,
                                                                                              without_run_report):
    base = load_dataset(f"synthderm:{tiny_synthderm}", progress=False)
    spec = one_image_per_lesion(base, tmp_path / "single.csv")
    dataset = load_dataset(spec, progress=False)
    assert dataset.manifest["lesion_id"].is_unique and len(dataset.manifest) < len(base.manifest)
    path = leaky_split(dataset, tmp_path / "image_level.csv")
    result = measure_inflation(RunConfig(methods=["tiny_linear"], data=spec, split=str(path), profile="quick", seeds=[0]),
                               tmp_path / "measure", progress=False)
    assert result["leak"]["lesions_crossing"] == 0 and result["moved_images"] == 0
    assert [row["diff"] for row in result["rows"]] == [0.0, 0.0]


def test_split_scheme_image_writes_the_leaky_split_that_audit_measures(tiny_synthderm, tmp_path, capsys):
    from benchbox.cli import main

    out = tmp_path / "leaky.csv"
    assert main(["split", f"synthderm:{tiny_synthderm}", "--scheme", "image", "--out", str(out)]) == 0
    table = pd.read_csv(out, dtype=str)
    assert (table["group_id"] == table["image_id"]).all()
    assert main(["audit", f"synthderm:{tiny_synthderm}", "--split", str(out)]) == 1  # the leak is reported
    assert "LEAKY" in capsys.readouterr().out
    assert main(["split", f"synthderm:{tiny_synthderm}", "--scheme", "image", "--folds", "3", "--out", str(out)]) == 2
