import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, matthews_corrcoef, roc_auc_score

from benchbox.errors import BenchboxError
from benchbox.labels import CLASSES, MALIGNANT_CLASSES
from benchbox.runner import job as job_module
from benchbox.runner.config import RunConfig
from benchbox.runner.run import execute

from runner_tiny_methods import TinyLinear


def _config(tiny_synthderm, tmp_path, methods=("tiny_linear",), **extra):
    options = dict(methods=list(methods), data=f"synthderm:{tiny_synthderm}", profile="smoke",
                   out=str(tmp_path / "run"), explain_n=8, device="cpu")
    options.update(extra)
    return RunConfig(**options)


@pytest.fixture(scope="module")
def finished_run(tiny_synthderm, tmp_path_factory):
    config = _config(tiny_synthderm, tmp_path_factory.mktemp("finished"))
    assert execute(config, progress=False) == 0
    return config.run_dir()


def test_metrics_json_matches_scikit_learn_on_predictions_csv(finished_run):
    folder = finished_run / "tiny_linear" / "seed0"
    predictions = pd.read_csv(folder / "predictions.csv")
    metrics = json.loads((folder / "metrics.json").read_text())["metrics"]
    test = predictions[predictions["split"] == "test"]
    y_true = test["y_true"].map(CLASSES.index).to_numpy()
    proba = test[[f"p_{c}" for c in CLASSES]].to_numpy()
    assert metrics["balanced_accuracy"]["value"] == pytest.approx(balanced_accuracy_score(y_true, proba.argmax(1)), abs=1e-12)
    assert metrics["mcc"]["value"] == pytest.approx(matthews_corrcoef(y_true, proba.argmax(1)), abs=1e-12)
    malignant = test["y_true"].isin(MALIGNANT_CLASSES).to_numpy()
    assert metrics["binary.auc"]["value"] == pytest.approx(roc_auc_score(malignant, test["p_malignant"]), abs=1e-12)
    assert metrics["mcc"]["ci_low"] <= metrics["mcc"]["value"] <= metrics["mcc"]["ci_high"]
    assert np.allclose(test["p_malignant"], test[[f"p_{c}" for c in MALIGNANT_CLASSES]].sum(axis=1))
    assert set(predictions["split"]) == {"val", "test"}


def test_isic_submission_covers_the_test_images_and_rows_sum_to_one(finished_run):
    folder = finished_run / "tiny_linear" / "seed0"
    submission = pd.read_csv(folder / "isic_submission.csv")
    predictions = pd.read_csv(folder / "predictions.csv")
    assert list(submission.columns) == ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    assert set(submission["image"]) == set(predictions.loc[predictions["split"] == "test", "image_id"])
    np.testing.assert_allclose(submission.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-9)


def test_run_records_provenance_explanations_and_efficiency(finished_run):
    run = json.loads((finished_run / "run.json").read_text())
    assert len(run["dataset"]["hash"]) == 64 and len(run["split"]["hash"]) == 64
    assert run["code_version"]["source_sha256"] and run["libraries"]["torch"]
    assert run["jobs"]["tiny_linear/seed0"]["status"] == "done"
    assert "report_error" not in run and "comparisons_error" not in run
    assert "tiny_linear" in (finished_run / "report" / "README.md").read_text()
    metrics = json.loads((finished_run / "tiny_linear" / "seed0" / "metrics.json").read_text())["metrics"]
    for name in ("xai.saliency.iou", "xai.gaussian.pointing_game", "xai.saliency.deletion_auc", "params_m",
                 "latency.ms_p50"):
        assert name in metrics
    assert metrics["params_m"]["value"] == pytest.approx((8 * 8 * 3 * 7 + 7) / 1e6)
    with np.load(finished_run / "tiny_linear" / "seed0" / "explanations.npz") as stored:
        assert stored["map_saliency"].shape == stored["masks"].shape == (8, 32, 32)
        assert stored["map_saliency"].min() >= 0 and stored["map_saliency"].max() <= 1


def test_a_second_identical_run_skips_every_job(finished_run, tiny_synthderm, capsys):
    before = TinyLinear.fits
    config = _config(tiny_synthderm, finished_run.parent)
    assert execute(config, progress=False) == 0
    assert TinyLinear.fits == before
    assert "done earlier, skipped" in capsys.readouterr().out


def test_a_failing_method_is_reported_and_the_others_finish(tiny_synthderm, tmp_path, capsys):
    config = _config(tiny_synthderm, tmp_path, methods=("broken", "tiny_linear"))
    assert execute(config, progress=False) == 1
    error = (config.run_dir() / "broken" / "seed0" / "error.txt").read_text()
    assert "broken/seed0 failed during fit: RuntimeError: planted failure in fit" in error
    assert "Traceback" in error
    run = json.loads((config.run_dir() / "run.json").read_text())
    assert run["jobs"]["broken/seed0"]["status"] == "failed"
    assert run["jobs"]["tiny_linear/seed0"]["status"] == "done"
    assert "report_error" not in run
    assert "1 of 2 job(s) failed" in capsys.readouterr().out
    log = (config.run_dir() / "run.log").read_text()  # the run's log keeps the failure too
    assert "ERROR benchbox.run: broken/seed0 failed during fit: RuntimeError: planted failure in fit" in log


def test_a_killed_run_resumes_without_redoing_finished_stages(tiny_synthderm, tmp_path, monkeypatch):
    config = _config(tiny_synthderm, tmp_path, seeds=[5])

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(job_module, "explain_and_score", killed)
    with pytest.raises(KeyboardInterrupt):
        execute(config, progress=False)
    folder = config.run_dir() / "tiny_linear" / "seed5"
    predictions = (folder / "predictions.csv").read_bytes()
    stamp = (folder / "predictions.csv").stat().st_mtime_ns
    assert not (folder / "metrics.json").exists()
    monkeypatch.undo()
    fits = TinyLinear.fits
    assert execute(config, progress=False) == 0
    assert TinyLinear.fits == fits  # the trained model was reused from the checkpoint cache
    assert (folder / "predictions.csv").stat().st_mtime_ns == stamp
    assert (folder / "predictions.csv").read_bytes() == predictions
    assert (folder / "metrics.json").exists() and (folder / "done.json").exists()


def test_a_job_that_failed_and_then_succeeds_leaves_no_stale_error(tiny_synthderm, tmp_path, monkeypatch):
    config = _config(tiny_synthderm, tmp_path, seeds=[6])

    def failing(*args, **kwargs):
        raise RuntimeError("planted failure in explain")

    monkeypatch.setattr(job_module, "explain_and_score", failing)
    assert execute(config, progress=False) == 1
    folder = config.run_dir() / "tiny_linear" / "seed6"
    assert "planted failure in explain" in (folder / "error.txt").read_text()
    monkeypatch.undo()
    assert execute(config, progress=False) == 0
    assert not (folder / "error.txt").exists()
    assert json.loads((config.run_dir() / "run.json").read_text())["jobs"]["tiny_linear/seed6"]["status"] == "done"


def test_configuration_is_checked_before_anything_starts(tiny_synthderm, tmp_path):
    with pytest.raises(BenchboxError, match="Did you mean 'tiny_linear'"):
        execute(_config(tiny_synthderm, tmp_path, methods=("tiny_linea",)), progress=False)
    with pytest.raises(BenchboxError, match="--profile must be one of"):
        execute(_config(tiny_synthderm, tmp_path, profile="huge"), progress=False)
    assert not (tmp_path / "run").exists()


def test_a_split_for_another_dataset_is_refused(tiny_synthderm, tmp_path):
    split = tmp_path / "other.csv"
    pd.DataFrame({"image_id": ["X1", "X2", "X3"], "group_id": ["a", "b", "c"], "split": ["train", "val", "test"]})\
        .to_csv(split, index=False)
    import hashlib

    (tmp_path / "other.csv.sha256").write_text(f"{hashlib.sha256(split.read_bytes()).hexdigest()}  other.csv\n")
    with pytest.raises(BenchboxError, match="not in the split"):
        execute(_config(tiny_synthderm, tmp_path, split=str(split)), progress=False)
    assert not (tmp_path / "run").exists()


def test_binary_methods_alone_are_compared_on_binary_labels(tiny_synthderm, tmp_path):
    config = _config(tiny_synthderm, tmp_path, methods=("tiny_binary", "tiny_binary_other"))
    assert execute(config, progress=False) == 0
    run = json.loads((config.run_dir() / "run.json").read_text())
    assert "comparisons_error" not in run
    rows = json.loads((config.run_dir() / "comparisons.json").read_text())
    assert [(row["board"], row["a"], row["b"], row["test"]) for row in rows] == [
        ("binary", "tiny_binary", "tiny_binary_other", "delong")]
    auc = {m: json.loads((config.run_dir() / m / "seed0" / "metrics.json").read_text())["metrics"]["binary.auc"]["value"]
           for m in ("tiny_binary", "tiny_binary_other")}
    assert rows[0]["value_a"] == pytest.approx(auc["tiny_binary"]) and rows[0]["value_b"] == pytest.approx(auc["tiny_binary_other"])
    assert 0 <= rows[0]["p_holm"] <= 1


def test_run_json_lists_only_this_invocations_jobs(tiny_synthderm, tmp_path):
    assert execute(_config(tiny_synthderm, tmp_path, methods=("tiny_linear", "broken")), progress=False) == 1
    config = _config(tiny_synthderm, tmp_path, methods=("tiny_linear",))
    assert execute(config, progress=False) == 0  # the earlier failure of another method is not this run's
    assert list(json.loads((config.run_dir() / "run.json").read_text())["jobs"]) == ["tiny_linear/seed0"]
