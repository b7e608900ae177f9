"""Reading run folders: values as written, NaN from null, seed means, clear errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from runfolder_builder import FAILED_METHOD, METHODS, build_run, edit_json

from benchbox.errors import BenchboxError
from benchbox.reports.runfolder import read_run


def test_reads_every_job_and_metric(tmp_path):
    run_dir = build_run(tmp_path)
    run = read_run(run_dir)
    assert run.methods == [*METHODS, FAILED_METHOD]
    assert [j.method for j in run.failed_jobs()] == [FAILED_METHOD]
    raw = json.loads((run_dir / "msfa" / "seed0" / "metrics.json").read_text())
    metrics = run.method_metrics("msfa")
    assert set(metrics) == set(raw["metrics"])
    assert metrics["mcc"].value == raw["metrics"]["mcc"]["value"]
    assert metrics["mcc"].ci_high == raw["metrics"]["mcc"]["ci_high"]
    assert metrics["mcc"].higher_is_better is True
    assert math.isnan(metrics["params_m"].ci_low)  # null CI in JSON
    nan_group = metrics["subgroup.sex.binary.auc.other"]
    assert math.isnan(nan_group.value) and nan_group.reason.startswith("group has")
    assert run.done_jobs("msfa")[0].confusion_matrix.sum() == 240
    assert run.task("recall_ensemble") == "binary" and run.task(FAILED_METHOD) is None
    assert len(run.comparisons) == 10 + 3


def test_several_seeds_read_the_method_level_file_and_keep_per_seed_values(tmp_path):
    run_dir = build_run(tmp_path, seeds=(0, 1, 2), methods=("msfa",), failed=())
    raws = [json.loads((run_dir / "msfa" / f"seed{s}" / "metrics.json").read_text())["metrics"]["auc_macro"]
            for s in range(3)]
    metric = read_run(run_dir).method_metrics("msfa")["auc_macro"]
    assert metric.value == pytest.approx(np.mean([r["value"] for r in raws]), abs=1e-15)
    assert metric.per_seed == tuple(r["value"] for r in raws)
    # wider than the mean per-seed interval: the seeds' spread is part of it
    assert metric.ci_low < np.mean([r["ci_low"] for r in raws]) and metric.ci_high > np.mean([r["ci_high"] for r in raws])
    assert len({r["value"] for r in raws}) == 3
    (run_dir / "msfa" / "metrics.json").unlink()
    with pytest.raises(BenchboxError, match=r"msfa/metrics.json is missing: msfa has 3 finished seeds"):
        read_run(run_dir).method_metrics("msfa")


def test_broken_run_folders_raise_benchbox_errors_naming_the_file(tmp_path):
    run_dir = build_run(tmp_path, methods=("msfa",), failed=())
    (run_dir / "msfa" / "seed0" / "metrics.json").write_text("{not json")
    with pytest.raises(BenchboxError, match=r"msfa/seed0/metrics.json is not valid JSON"):
        read_run(run_dir)
    (run_dir / "msfa" / "seed0" / "metrics.json").unlink()
    with pytest.raises(BenchboxError, match=r"metrics.json is missing"):
        read_run(run_dir)
    edit_json(run_dir / "run.json", lambda data: data.update(jobs={"msfa-seed0": {"status": "done"}}))
    with pytest.raises(BenchboxError, match="not '<method>/seed<k>'"):
        read_run(run_dir)
    with pytest.raises(BenchboxError, match="not a folder"):
        read_run(tmp_path / "nowhere")


def test_failed_job_error_falls_back_to_error_txt(tmp_path):
    run_dir = build_run(tmp_path, methods=("msfa",))
    edit_json(run_dir / "run.json", lambda data: data["jobs"][f"{FAILED_METHOD}/seed0"].update(error=None))
    failed = read_run(run_dir).failed_jobs()[0]
    assert failed.error == (run_dir / FAILED_METHOD / "seed0" / "error.txt").read_text()
    assert failed.error.endswith("CUDA out of memory (planted)")


def _edit_cell(path, line: int, column: str, value: str) -> None:
    lines = path.read_text().splitlines()
    header, cells = lines[0].split(","), lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


NOT_ONE = "holds probability rows that do not sum to 1 (tolerance 0.0001) at line 6 (image ISIC_0000004): sums "


@pytest.mark.parametrize(("method", "column", "value", "problem"), [
    ("msfa", "p_mel", "nan", "holds a missing, NaN or non-numeric p_mel at line 6 (image ISIC_0000004)"),
    ("msfa", "p_nv", "0.97", NOT_ONE),
    ("xception", "p_benign", "0.2", NOT_ONE),
    ("xception", "p_malignant", "", "holds a missing, NaN or non-numeric p_malignant at line 6"),
])
def test_predictions_that_are_not_probabilities_are_refused_naming_file_line_and_repair(
        tmp_path, capsys, method, column, value, problem):
    from benchbox import cli

    run_dir = build_run(tmp_path, methods=("msfa", "xception"), failed=())
    _edit_cell(run_dir / method / "seed0" / "predictions.csv", 6, column, value)
    assert cli.main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert f"{run_dir}/{method}/seed0/predictions.csv {problem}" in err and "Traceback" not in err
    assert f"benchbox run --methods msfa,xception --data synthderm --profile quick --seeds 0 --out {run_dir}" in err
    assert not (tmp_path / "report").exists()  # nothing half-rendered


def test_a_deleted_predictions_csv_is_named_with_its_repair(tmp_path, capsys):
    from benchbox import cli

    run_dir = build_run(tmp_path, methods=("msfa",), failed=())
    (run_dir / "msfa" / "seed0" / "predictions.csv").unlink()
    assert cli.main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert f"{run_dir}/msfa/seed0/predictions.csv is missing. Repair it by re-running" in err
    assert "Traceback" not in err and "FileNotFoundError" not in err


def test_the_repair_command_parses_back_to_the_recorded_configuration():
    import shlex

    from benchbox.cli import build_parser
    from benchbox.reports.runfolder import rerun_command

    config = {"methods": ["msfa", "xception"], "data": "ham10000:/data/HAM 10000", "split": "s.csv",
              "profile": "paper", "seeds": [0, 2], "out": "elsewhere", "device": "cuda:1", "explain_n": 16,
              "faithfulness": "road", "pretrained": False, "weights_dir": "/w", "only_present": True,
              "on_bad_image": "skip"}
    command = rerun_command(config, "runs/my run")
    assert command.startswith("`benchbox run ") and command.endswith("`")
    args = build_parser().parse_args(shlex.split(command.strip("`"))[1:])
    assert (args.methods, args.data, args.split, args.profile, args.seeds, args.out, args.device) == (
        "msfa,xception", "ham10000:/data/HAM 10000", "s.csv", "paper", [0, 2], "runs/my run", "cuda:1")
    assert (args.explain_n, args.faithfulness, args.pretrained, args.weights_dir, args.only_present,
            args.on_bad_image) == (16, "road", False, "/w", True, "skip")
    defaults = build_parser().parse_args(shlex.split(rerun_command(
        {"methods": ["msfa"], "data": "synthderm", "profile": "quick", "seeds": [0], "split": None,
         "device": "auto", "explain_n": None, "faithfulness": "fast", "pretrained": None, "weights_dir": None,
         "only_present": False, "on_bad_image": "fail"}, "r").strip("`"))[1:])
    assert (defaults.pretrained, defaults.explain_n, defaults.split, defaults.device) == (None, None, None, "auto")
