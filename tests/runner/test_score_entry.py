"""`benchbox score`: an outside model's predictions scored into a run folder (issue 14, point 3).
Here beside the runner tests, whose tiny methods make a real run folder in seconds."""

import json

import pandas as pd
import pytest

from benchbox.cli import main
from benchbox.runner.config import RunConfig
from benchbox.runner.run import execute

SCORING_ONLY = ("xai.", "latency.", "throughput.", "params_m", "gflops", "peak_memory")  # stages with no file


@pytest.fixture(scope="module")
def hosted_run(tiny_synthderm, tmp_path_factory):
    config = RunConfig(methods=["tiny_linear", "tiny_binary"], data=f"synthderm:{tiny_synthderm}", profile="smoke",
                       out=str(tmp_path_factory.mktemp("hosted") / "run"), explain_n=4, device="cpu")
    assert execute(config, progress=False) == 0
    return config.run_dir()


def _copy(run_dir, tmp_path):
    import shutil

    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


def _score(tiny_synthderm, *argv) -> int:
    return main(["score", *map(str, argv), "--data", f"synthderm:{tiny_synthderm}", "--quiet"])


def test_a_hosted_methods_own_submission_reproduces_its_metrics_and_joins_every_board(hosted_run, tiny_synthderm, tmp_path):
    run = _copy(hosted_run, tmp_path)
    job = run / "tiny_linear" / "seed0"
    assert _score(tiny_synthderm, job / "isic_submission.csv", "--val", job / "predictions.csv",
                  "--out", run, "--name", "outside") == 0
    hosted = json.loads((job / "metrics.json").read_text())
    scored = json.loads((run / "outside" / "seed0" / "metrics.json").read_text())
    compared = {k: v for k, v in hosted["metrics"].items() if not k.startswith(SCORING_ONLY)}
    assert len(compared) > 100
    assert {k: scored["metrics"][k] for k in compared} == compared  # values, intervals, subgroups: exactly
    assert (scored["threshold"], scored["threshold_rule"]) == (hosted["threshold"], "youden_on_val")
    readme = (run / "report" / "README.md").read_text()
    boards = readme.split("\n## ")
    for title in ("7-class", "Binary"):
        board = next(section for section in boards if section.startswith(title))
        assert "| outside " in board
    comparisons = json.loads((run / "comparisons.json").read_text())
    assert {("outside", "tiny_linear"), ("tiny_linear", "outside")} & {(c["a"], c["b"]) for c in comparisons}
    assert json.loads((run / "run.json").read_text())["scored"]["outside"]["layout"] == "isic2018"


def test_without_validation_predictions_the_operating_point_is_the_stated_default(hosted_run, tiny_synthderm, tmp_path):
    run = _copy(hosted_run, tmp_path)
    frame = pd.read_csv(run / "tiny_binary" / "seed0" / "predictions.csv")
    test = frame[frame["split"] == "test"]
    pd.DataFrame({"image": test["image_id"], "malignant": test["p_malignant"]}).to_csv(tmp_path / "b.csv", index=False)
    assert _score(tiny_synthderm, tmp_path / "b.csv", "--out", run, "--name", "outside-binary") == 0
    scored = json.loads((run / "outside-binary" / "seed0" / "metrics.json").read_text())
    assert (scored["task"], scored["threshold"]) == ("binary", 0.5)
    assert scored["threshold_rule"] == "default 0.5 (no validation predictions)"
    hosted = json.loads((run / "tiny_binary" / "seed0" / "metrics.json").read_text())
    assert scored["metrics"]["binary.auc"] == hosted["metrics"]["binary.auc"]  # threshold-free: the same


def _test_rows(run):
    frame = pd.read_csv(run / "tiny_linear" / "seed0" / "isic_submission.csv")
    return frame


def test_missing_and_extra_images_are_refused_and_nothing_is_written(hosted_run, tiny_synthderm, tmp_path, capsys):
    run = _copy(hosted_run, tmp_path)
    before = (run / "run.json").read_bytes()
    frame = _test_rows(run)
    frame.iloc[3:].to_csv(tmp_path / "fewer.csv", index=False)
    assert _score(tiny_synthderm, tmp_path / "fewer.csv", "--out", run, "--name", "fewer") == 2
    err = capsys.readouterr().err
    assert f"3 of the {len(frame)} test images of split" in err and "--allow-subset" in err
    assert frame["image"].iloc[0] in err  # the missing ids are shown
    extra = pd.concat([frame, frame.iloc[[0]].assign(image="SYN_9999999")])
    extra.to_csv(tmp_path / "extra.csv", index=False)
    assert _score(tiny_synthderm, tmp_path / "extra.csv", "--out", run, "--name", "extra") == 2
    assert "1 image id(s) are not in the test part of split" in capsys.readouterr().err
    assert not (run / "fewer").exists() and not (run / "extra").exists()
    assert (run / "run.json").read_bytes() == before


def test_allow_subset_records_the_subset_and_keeps_it_out_of_the_paired_tests(hosted_run, tiny_synthderm, tmp_path):
    run = _copy(hosted_run, tmp_path)
    frame = _test_rows(run)
    frame.iloc[3:].to_csv(tmp_path / "fewer.csv", index=False)
    assert _score(tiny_synthderm, tmp_path / "fewer.csv", "--out", run, "--name", "fewer", "--allow-subset") == 0
    subset = json.loads((run / "run.json").read_text())["scored"]["fewer"]["subset"]
    assert (subset["scored"], subset["test_images"]) == (len(frame) - 3, len(frame))
    assert sorted(subset["missing"]) == sorted(frame["image"].iloc[:3])
    comparisons = json.loads((run / "comparisons.json").read_text())
    assert comparisons and all("fewer" not in (c["a"], c["b"]) for c in comparisons)


def test_a_new_run_folder_and_a_hosted_name_refused(hosted_run, tiny_synthderm, tmp_path, monkeypatch, capsys):
    submission = hosted_run / "tiny_linear" / "seed0" / "isic_submission.csv"
    assert _score(tiny_synthderm, submission, "--out", hosted_run, "--name", "tiny_linear") == 2
    assert "is a method this run folder trained" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert _score(tiny_synthderm, submission, "--name", "mine") == 0
    run = tmp_path / "reports" / "synthderm-score-mine"
    record = json.loads((run / "run.json").read_text())
    assert record["split"]["hash"] == json.loads((hosted_run / "run.json").read_text())["split"]["hash"]
    assert list(record["jobs"]) == ["mine/seed0"] and record["config"]["profile"] == "score"
    assert "| mine " in (run / "report" / "README.md").read_text()


def test_a_later_run_into_the_folder_keeps_the_outside_model(hosted_run, tiny_synthderm, tmp_path):
    run = _copy(hosted_run, tmp_path)
    job = run / "tiny_linear" / "seed0"
    assert _score(tiny_synthderm, job / "isic_submission.csv", "--val", job / "predictions.csv",
                  "--out", run, "--name", "outside") == 0
    config = RunConfig(methods=["tiny_linear", "tiny_binary"], data=f"synthderm:{tiny_synthderm}", profile="smoke",
                       out=str(run), explain_n=4, device="cpu")
    assert execute(config, progress=False) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["jobs"]["outside/seed0"]["scored"] and "outside" in record["scored"]
    assert any("outside" in (c["a"], c["b"]) for c in json.loads((run / "comparisons.json").read_text()))
    assert "| outside " in (run / "report" / "README.md").read_text()
