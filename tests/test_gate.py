"""The regression gate on fixture runs: identical run passes; a planted regression, a vanished
method, a newly failed method and a changed split each fail with the right verdict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from runfolder_builder import METHODS, SPLIT_HASH, build_run, edit_json

from benchbox import cli
from benchbox.errors import BenchboxError
from benchbox.gate import DEFAULT_POLICY, Tolerance, gate, judge_metric, load_policy, tolerance_for, write_baseline
from benchbox.reports.runfolder import Metric


@pytest.fixture
def run_and_baseline(tmp_path) -> tuple[Path, Path]:
    run_dir = build_run(tmp_path)
    return run_dir, write_baseline(run_dir, tmp_path / "baseline.json")


def verdicts(markdown: str) -> dict[tuple[str, str], str]:
    """(method, metric) -> verdict from the gate's table."""
    rows = [line.split("|")[1:-1] for line in markdown.splitlines() if line.startswith("| ")]
    return {(r[0].strip(), r[1].strip()): r[-1].strip() for r in rows[1:]}


def set_metric(run_dir: Path, method: str, name: str, value: float | None) -> None:
    def change(data):
        data["metrics"][name]["value"] = value
    edit_json(run_dir / method / "seed0" / "metrics.json", change)


def test_identical_run_passes(run_and_baseline):
    run_dir, baseline = run_and_baseline
    code, markdown = gate(baseline, run_dir)
    assert code == 0 and markdown.startswith("## benchbox gate: PASS")
    table = verdicts(markdown)
    judged = {k: v for k, v in table.items() if k[1] != "(method)"}
    assert judged and set(judged.values()) == {"ok"}
    assert ("msfa", "mcc") in table and ("recall_ensemble", "binary.auc") in table
    assert ("msfa", "latency.ms_p50") not in table  # not gated by the policy
    assert table[("resnet50", "(method)")].startswith("still failing")


def test_baseline_holds_protocol_and_only_gated_metrics(run_and_baseline):
    run_dir, baseline = run_and_baseline
    data = json.loads(baseline.read_text())
    run = json.loads((run_dir / "run.json").read_text())
    assert data["protocol"]["split_hash"] == run["split"]["hash"]
    assert data["protocol"]["dataset_hash"] == run["dataset"]["hash"]
    raw = json.loads((run_dir / "msfa" / "seed0" / "metrics.json").read_text())["metrics"]["mcc"]
    assert data["methods"]["msfa"]["metrics"]["mcc"] == {k: raw[k] for k in ("value", "ci_low", "ci_high",
                                                                             "higher_is_better")}
    assert set(data["methods"]["msfa"]["metrics"]) == {
        "mcc", "balanced_accuracy", "f1_macro", "auc_macro", "binary.auc", "binary.sensitivity", "ece",
        "xai.gradcam.iou_at_mask_area", "xai.gaussian.iou_at_mask_area"}
    assert data["methods"]["resnet50"]["status"] == "failed"


def test_planted_regression_in_one_metric_of_one_method_fails(run_and_baseline):
    run_dir, baseline = run_and_baseline
    before = json.loads(baseline.read_text())["methods"]["soft_attention"]["metrics"]["mcc"]["value"]
    set_metric(run_dir, "soft_attention", "mcc", before - 0.1)
    code, markdown = gate(baseline, run_dir)
    assert code == 1 and markdown.startswith("## benchbox gate: FAIL")
    table = verdicts(markdown)
    assert table[("soft_attention", "mcc")] == "FAIL: regression"
    assert [k for k, v in table.items() if v.startswith("FAIL")] == [("soft_attention", "mcc")]
    assert "- soft_attention mcc: FAIL: regression" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| soft_attention  | mcc "))
    assert "| -0.100 " in row


def test_small_drops_pass_and_direction_is_respected(run_and_baseline):
    run_dir, baseline = run_and_baseline
    methods = json.loads(baseline.read_text())["methods"]
    set_metric(run_dir, "msfa", "mcc", methods["msfa"]["metrics"]["mcc"]["value"] - 0.01)  # within 0.02
    set_metric(run_dir, "msfa", "ece", methods["msfa"]["metrics"]["ece"]["value"] - 0.1)  # lower ece: better
    set_metric(run_dir, "xception", "binary.ece", methods["xception"]["metrics"]["binary.ece"]["value"] + 0.1)
    code, markdown = gate(baseline, run_dir)
    table = verdicts(markdown)
    assert (table[("msfa", "mcc")], table[("msfa", "ece")]) == ("ok", "improved")
    assert table[("xception", "binary.ece")] == "FAIL: regression" and code == 1


def test_metric_turning_nan_fails(run_and_baseline):
    run_dir, baseline = run_and_baseline
    set_metric(run_dir, "dual_task", "segmentation.dice", None)
    code, markdown = gate(baseline, run_dir)
    assert code == 1 and verdicts(markdown)[("dual_task", "segmentation.dice")] == "FAIL: now NaN"


def test_vanished_method_fails(run_and_baseline):
    run_dir, baseline = run_and_baseline
    edit_json(run_dir / "run.json", lambda data: data["jobs"].pop("msfa/seed0"))
    code, markdown = gate(baseline, run_dir)
    assert code == 1 and verdicts(markdown)[("msfa", "(method)")] == "FAIL: method missing"
    assert "- msfa is missing from the run" in markdown


def test_newly_failed_method_fails(run_and_baseline):
    run_dir, baseline = run_and_baseline
    edit_json(run_dir / "run.json",
              lambda data: data["jobs"]["xception/seed0"].update(status="failed", error="Traceback\nValueError: boom"))
    code, markdown = gate(baseline, run_dir)
    assert code == 1 and verdicts(markdown)[("xception", "(method)")] == "FAIL: newly failed"
    assert "- xception newly failed: ValueError: boom" in markdown


def test_changed_split_hash_is_not_comparable_unless_allowed(run_and_baseline):
    run_dir, baseline = run_and_baseline
    edit_json(run_dir / "run.json", lambda data: data["split"].update(hash="f" * 64))
    code, markdown = gate(baseline, run_dir)
    assert code == 1 and markdown.startswith("## benchbox gate: NOT COMPARABLE")
    protocol_rows = [[c.strip() for c in line.split("|")[1:-1]] for line in markdown.splitlines()
                     if line.startswith("| split_hash") or line.startswith("| dataset_hash")]
    assert protocol_rows == [["split_hash", SPLIT_HASH, "f" * 64]]
    code, markdown = gate(baseline, run_dir, allow_protocol_change=True)
    assert code == 0 and markdown.startswith("## benchbox gate: PASS") and "--allow-protocol-change" in markdown


def test_tolerance_is_the_larger_of_absolute_and_ci_units():
    baseline = Metric(0.80, 0.60, 1.00, higher_is_better=True)  # half-width 0.2
    tolerance = Tolerance(absolute=0.02, ci_units=0.5)  # allowed drop max(0.02, 0.1) = 0.1
    assert tolerance.allowed_drop(baseline) == pytest.approx(0.1)
    assert judge_metric(baseline, Metric(0.71), tolerance) == ("ok", False)
    assert judge_metric(baseline, Metric(0.69), tolerance) == ("FAIL: regression", True)
    assert judge_metric(baseline, Metric(0.95), tolerance) == ("improved", False)
    no_ci = Metric(0.80, higher_is_better=True)
    assert Tolerance(0.02, 0.5).allowed_drop(no_ci) == 0.02
    assert judge_metric(Metric(math.nan, higher_is_better=True), Metric(0.5), tolerance) == ("ok (was NaN)", False)
    assert judge_metric(baseline, None, tolerance) == ("FAIL: metric missing", True)


def test_repository_policy_loads_and_matches_patterns(tmp_path):
    policy = load_policy(DEFAULT_POLICY)
    assert tolerance_for(policy, "multiclass", "mcc") == Tolerance(0.02, 0.5)
    assert tolerance_for(policy, "binary", "xai.gradcam_pp.iou_at_mask_area") == Tolerance(0.03, 0.5)
    assert tolerance_for(policy, "binary", "mcc") is None
    assert tolerance_for(policy, "multiclass", "latency.ms_p50") is None
    bad = tmp_path / "gate.yaml"
    bad.write_text("tasks:\n  binary:\n    binary.auc: {relative: 0.1}\n")
    with pytest.raises(BenchboxError, match="unknown keys"):
        load_policy(bad)


def test_cli_writes_baseline_and_gates(run_and_baseline, tmp_path, monkeypatch, capsys):
    run_dir, _ = run_and_baseline
    if "benchbox.gate_commands" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "benchbox.gate_commands"))
    written = tmp_path / "cli-baseline.json"
    assert cli.main(["gate", "--run", str(run_dir), "--write-baseline", str(written)]) == 0
    assert set(json.loads(written.read_text())["methods"]) == {*METHODS, "resnet50"}
    assert cli.main(["gate", "--run", str(run_dir), "--baseline", str(written)]) == 0
    set_metric(run_dir, "msfa", "binary.auc", 0.5)
    assert cli.main(["gate", "--run", str(run_dir), "--baseline", str(written)]) == 1
    assert "FAIL: regression" in capsys.readouterr().out
    assert cli.main(["gate", "--run", str(run_dir), "--baseline", str(tmp_path / "absent.json")]) == 2
    assert "not found" in capsys.readouterr().err
