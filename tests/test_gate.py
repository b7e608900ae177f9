"""The regression gate on 3-seed fixture runs: identical run passes; a planted regression, a
vanished method, a newly failed method, a metric turning NaN each fail with the right verdict;
the protocol check, environment differences, bad baseline files and the CLI's exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from runfolder_builder import DATASET_HASH, METHODS, build_run, edit_json

from benchbox import cli
from benchbox.errors import BenchboxError
from benchbox.gate import DEFAULT_POLICY, Rule, gate, load_policy, write_baseline

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("template"), seeds=SEEDS)


@pytest.fixture
def run_and_baseline(template, tmp_path) -> tuple[Path, Path]:
    run_dir = tmp_path / "run"
    shutil.copytree(template, run_dir)
    return run_dir, write_baseline(run_dir, tmp_path / "baseline.json")


def verdicts(markdown: str) -> dict[tuple[str, str], str]:
    """(method, metric) -> verdict from the gate's table."""
    rows = [line.split("|")[1:-1] for line in markdown.splitlines() if line.startswith("| ")]
    return {(r[0].strip(), r[1].strip()): r[-1].strip() for r in rows[1:]}


def row(markdown: str, method: str, metric: str) -> list[str]:
    return next([c.strip() for c in line.split("|")[1:-1]] for line in markdown.splitlines()
                if line.startswith("| ") and [c.strip() for c in line.split("|")[1:3]] == [method, metric])


def shift_metric(run_dir: Path, method: str, name: str, by: float | None, seeds=SEEDS) -> None:
    """Add `by` to a metric on the given seeds (None: make it NaN)."""
    for seed in seeds:
        def change(data):
            entry = data["metrics"][name]
            entry["value"] = None if by is None else entry["value"] + by
        edit_json(run_dir / method / f"seed{seed}" / "metrics.json", change)


def cli_main(argv: list[str], monkeypatch) -> int:
    if "benchbox.gate_commands" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "benchbox.gate_commands"))
    return cli.main(argv)


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
    cells = row(markdown, "msfa", "binary.auc")
    assert cells[2] == cells[3] and cells[2].endswith("(n=3)") and " ± " in cells[2]
    assert (cells[4], cells[5], cells[6]) == ("0", "0.100", "0.500")


def test_baseline_holds_per_seed_values_config_and_environment(run_and_baseline):
    run_dir, baseline = run_and_baseline
    data = json.loads(baseline.read_text())
    run = json.loads((run_dir / "run.json").read_text())
    assert data["benchbox_gate_baseline"] == 2
    assert data["protocol"]["split_hash"] == run["split"]["hash"]
    assert data["protocol"]["dataset_hash"] == DATASET_HASH and data["protocol"]["seeds"] == [0, 1, 2]
    assert data["config"] == {key: run["config"][key] for key in ("methods", "data", "split", "profile", "seeds")}
    assert data["libraries"] == run["libraries"] and data["hardware"] == run["hardware"]
    assert data["code_version"] == run["code_version"]
    mcc = data["methods"]["msfa"]["metrics"]["mcc"]
    for seed in SEEDS:
        raw = json.loads((run_dir / "msfa" / f"seed{seed}" / "metrics.json").read_text())["metrics"]["mcc"]
        assert (mcc["values"][str(seed)], mcc["ci_low"][str(seed)], mcc["ci_high"][str(seed)]) == (
            raw["value"], raw["ci_low"], raw["ci_high"])
    assert mcc["higher_is_better"] is True
    assert set(data["methods"]["msfa"]["metrics"]) == {
        "mcc", "balanced_accuracy", "f1_macro", "auc_macro", "binary.auc", "binary.sensitivity", "ece",
        "xai.gradcam.iou_at_mask_area", "xai.gaussian.iou_at_mask_area"}
    assert data["methods"]["resnet50"]["status"] == "failed"


def test_planted_regression_in_one_metric_of_one_method_fails(run_and_baseline):
    run_dir, baseline = run_and_baseline
    shift_metric(run_dir, "soft_attention", "auc_macro", -0.2)
    code, markdown = gate(baseline, run_dir)
    assert code == 1 and markdown.startswith("## benchbox gate: FAIL")
    table = verdicts(markdown)
    assert table[("soft_attention", "auc_macro")] == "FAIL: regression"
    assert [k for k, v in table.items() if v.startswith("FAIL")] == [("soft_attention", "auc_macro")]
    assert "- soft_attention auc_macro: FAIL: regression" in markdown
    cells = row(markdown, "soft_attention", "auc_macro")
    assert cells[4] == "-0.200" and cells[6] == "<0.001"


def test_noise_sized_and_small_drops_pass_and_direction_is_respected(run_and_baseline):
    run_dir, baseline = run_and_baseline
    shift_metric(run_dir, "msfa", "mcc", -0.05)  # below the minimum effect 0.10
    shift_metric(run_dir, "msfa", "ece", -0.1)  # lower ece: better
    shift_metric(run_dir, "xception", "binary.ece", +0.1)  # higher ece: worse, beyond 0.05
    code, markdown = gate(baseline, run_dir)
    table = verdicts(markdown)
    assert (table[("msfa", "mcc")], table[("msfa", "ece")]) == ("ok", "improved")
    assert table[("xception", "binary.ece")] == "FAIL: regression" and code == 1


def test_metric_turning_nan_fails(run_and_baseline):
    run_dir, baseline = run_and_baseline
    shift_metric(run_dir, "msfa", "binary.auc", None, seeds=(1,))
    code, markdown = gate(baseline, run_dir)
    assert code == 1 and verdicts(markdown)[("msfa", "binary.auc")] == "FAIL: now NaN"


def test_vanished_method_fails(run_and_baseline):
    run_dir, baseline = run_and_baseline
    edit_json(run_dir / "run.json", lambda data: [data["jobs"].pop(f"msfa/seed{s}") for s in SEEDS])
    code, markdown = gate(baseline, run_dir)
    assert code == 1 and verdicts(markdown)[("msfa", "(method)")] == "FAIL: method missing"
    assert "- msfa is missing from the run" in markdown


def test_newly_failed_method_fails(run_and_baseline):
    run_dir, baseline = run_and_baseline
    edit_json(run_dir / "run.json",
              lambda data: data["jobs"]["xception/seed1"].update(status="failed", error="Traceback\nValueError: boom"))
    code, markdown = gate(baseline, run_dir)
    assert code == 1 and verdicts(markdown)[("xception", "(method)")] == "FAIL: newly failed"
    assert "- xception newly failed: ValueError: boom" in markdown


def test_new_metric_is_listed_not_judged(run_and_baseline, tmp_path):
    run_dir, baseline = run_and_baseline
    data = json.loads(baseline.read_text())
    del data["methods"]["msfa"]["metrics"]["f1_macro"]
    baseline.write_text(json.dumps(data))
    code, markdown = gate(baseline, run_dir)
    assert code == 0 and verdicts(markdown)[("msfa", "f1_macro")] == "new (not in baseline)"


def test_changed_dataset_hash_is_not_comparable_unless_allowed(run_and_baseline):
    run_dir, baseline = run_and_baseline
    edit_json(run_dir / "run.json", lambda data: data["dataset"].update(hash="f" * 64))
    code, markdown = gate(baseline, run_dir)
    assert code == 1 and markdown.startswith("## benchbox gate: NOT COMPARABLE")
    assert f"dataset_hash: {DATASET_HASH[:12]}… → {'f' * 12}…" in markdown
    code, markdown = gate(baseline, run_dir, allow_protocol_change=True)
    assert code == 0 and markdown.startswith("## benchbox gate: PASS")
    assert "compared anyway (--allow-protocol-change)" in markdown


def test_changed_explanation_settings_are_not_comparable(run_and_baseline):
    run_dir, baseline = run_and_baseline
    edit_json(run_dir / "run.json", lambda data: data.update(evaluation={"explain_n": 64, "deletion_steps": 20}))
    code, markdown = gate(baseline, run_dir)
    assert code == 1 and "explain_n: None → 64" in markdown and "deletion_steps: None → 20" in markdown


def test_other_libraries_hardware_and_code_are_printed_not_fatal(run_and_baseline):
    run_dir, baseline = run_and_baseline

    def change(data):
        data["libraries"]["torch"] = "2.9.0"
        data["hardware"]["device"] = "cuda:0"
        data["code_version"]["git"] = "v0.2.0"
    edit_json(run_dir / "run.json", change)
    code, markdown = gate(baseline, run_dir)
    assert code == 0 and markdown.startswith("## benchbox gate: PASS")
    assert "Environment differs (not fatal)" in markdown and "libraries.torch: 2.4.0 → 2.9.0" in markdown
    assert "hardware.device: cpu → cuda:0" in markdown and "code_version.git: v0.1.0-3-gabc1234-dirty → v0.2.0" in markdown


def test_one_seed_run_falls_back_to_tolerance(tmp_path):
    run_dir = build_run(tmp_path, seeds=(0,))
    baseline = write_baseline(run_dir, tmp_path / "one.json", allow_not_gateable=True)
    code, markdown = gate(baseline, run_dir)
    assert code == 0 and verdicts(markdown)[("msfa", "mcc")] == "ok (one seed: tolerance only)"
    shift_metric(run_dir, "msfa", "mcc", -0.3, seeds=(0,))
    code, markdown = gate(baseline, run_dir)
    assert code == 1 and verdicts(markdown)[("msfa", "mcc")] == "FAIL: regression (one seed: tolerance only)"


def test_write_baseline_refuses_an_at_chance_primary_metric(template, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(template, run_dir)
    for seed in SEEDS:
        edit_json(run_dir / "xception" / f"seed{seed}" / "metrics.json",
                  lambda data: data["metrics"]["binary.auc"].update(value=0.55))
    out = tmp_path / "b.json"
    assert cli_main(["gate", "--run", str(run_dir), "--write-baseline", str(out)], monkeypatch) == 2
    error = capsys.readouterr().err
    assert "xception: binary.auc (at chance: mean 0.550" in error and "--allow-not-gateable" in error
    assert "msfa" not in error and not out.exists()
    assert cli_main(["gate", "--run", str(run_dir), "--write-baseline", str(out), "--allow-not-gateable"],
                    monkeypatch) == 0
    shift_metric(run_dir, "xception", "binary.auc", -0.3)  # at chance: not gateable, never fails
    code, markdown = gate(out, run_dir)
    assert code == 0 and verdicts(markdown)[("xception", "binary.auc")].startswith("not gateable (at chance")
    assert verdicts(markdown)[("xception", "binary.sensitivity")] == "not gateable (binary.auc not gateable)"


def test_bad_baseline_files_exit_2_naming_the_file(run_and_baseline, tmp_path, monkeypatch, capsys):
    run_dir, baseline = run_and_baseline
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    assert cli_main(["gate", "--run", str(run_dir), "--baseline", str(listed)], monkeypatch) == 2
    error = capsys.readouterr().err
    assert str(listed) in error and "JSON list" in error and "Traceback" not in error
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"benchbox_gate_baseline": 1, "protocol": {}, "methods": {}}))
    assert cli_main(["gate", "--run", str(run_dir), "--baseline", str(old)], monkeypatch) == 2
    error = capsys.readouterr().err
    assert str(old) in error and "old-format baseline (format 1)" in error and "--write-baseline" in error
    for text in ("{not json", json.dumps({"benchbox_gate_baseline": 2, "methods": [1]})):
        broken = tmp_path / "broken.json"
        broken.write_text(text)
        assert cli_main(["gate", "--run", str(run_dir), "--baseline", str(broken)], monkeypatch) == 2
        assert str(broken) in capsys.readouterr().err
    assert cli_main(["gate", "--run", str(run_dir), "--baseline", str(tmp_path / "absent.json")], monkeypatch) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_writes_baseline_gates_and_checks_arguments(run_and_baseline, tmp_path, monkeypatch, capsys):
    run_dir, _ = run_and_baseline
    written = tmp_path / "cli-baseline.json"
    assert cli_main(["gate", "--run", str(run_dir), "--write-baseline", str(written)], monkeypatch) == 0
    assert set(json.loads(written.read_text())["methods"]) == {*METHODS, "resnet50"}
    assert cli_main(["gate", "--run", str(run_dir), "--baseline", str(written)], monkeypatch) == 0
    shift_metric(run_dir, "msfa", "binary.auc", -0.4)
    capsys.readouterr()
    assert cli_main(["gate", "--run", str(run_dir), "--baseline", str(written)], monkeypatch) == 1
    assert "FAIL: regression" in capsys.readouterr().out
    assert cli_main(["gate", "--rerun"], monkeypatch) == 2
    assert "--rerun needs --baseline" in capsys.readouterr().err
    assert cli_main(["gate", "--run", str(run_dir), "--baseline", str(written), "--out", "x"], monkeypatch) == 2
    assert cli_main(["gate", "--baseline", str(written)], monkeypatch) == 2


def test_repository_policy_loads_and_matches_patterns(tmp_path):
    policy = load_policy(DEFAULT_POLICY)
    assert policy.alpha == 0.05 and policy.chance_margin == 1.5
    assert policy.primary == {"multiclass": "balanced_accuracy", "binary": "binary.auc"}
    assert policy.rule("multiclass", "mcc") == Rule(0.10, 0.5, 0.0)
    assert policy.rule("multiclass", "balanced_accuracy").chance == pytest.approx(1 / 7, abs=1e-6)
    assert policy.rule("multiclass", "f1_macro").chance is None  # tied to the primary metric
    assert policy.rule("binary", "binary.sensitivity") == Rule(0.15, 0.5, None, (0.02, 0.98))
    assert policy.rule("binary", "xai.gradcam_pp.iou_at_mask_area") == Rule(0.10, 0.5, None)
    assert policy.rule("binary", "mcc") is None
    assert policy.rule("multiclass", "latency.ms_p50") is None
    bad = tmp_path / "gate.yaml"
    bad.write_text("tasks:\n  binary:\n    binary.auc: {relative: 0.1}\n")
    with pytest.raises(BenchboxError, match="unknown keys"):
        load_policy(bad)
