"""A whole run folder, walked: no value anywhere lies outside its own interval (issue: a max - min
subgroup gap and BCa of ECE once printed intervals that excluded their estimate)."""

import json

from benchbox.reports.runfolder import intervals_missing_their_estimate
from benchbox.runner.config import RunConfig
from benchbox.runner.run import execute


def test_every_interval_of_a_two_seed_run_contains_its_estimate(tiny_synthderm, tmp_path):
    config = RunConfig(methods=["tiny_linear", "tiny_binary"], data=f"synthderm:{tiny_synthderm}", profile="smoke",
                       seeds=[0, 1], out=str(tmp_path / "run"), explain_n=8, device="cpu")
    assert execute(config, progress=False) == 0
    run_dir = config.run_dir()
    files = sorted(run_dir.glob("*/**/metrics.json"))
    assert len(files) == 6  # two methods x (two seeds + the method-level file)
    pooled = json.loads((run_dir / "tiny_linear" / "metrics.json").read_text())
    assert pooled["seeds"] == [0, 1] and pooled["metrics"]["mcc"]["ci_method"].startswith("seed+lesion")
    assert any(name.startswith("subgroup.") for name in pooled["metrics"])
    assert intervals_missing_their_estimate(run_dir) == []


def test_a_value_outside_its_interval_is_named(tmp_path):
    folder = tmp_path / "m" / "seed0"
    folder.mkdir(parents=True)
    entry = {"value": 0.0792, "ci_low": 0.0462, "ci_high": 0.0693}
    (folder / "metrics.json").write_text(json.dumps({"metrics": {"subgroup.ita.binary.auc.gap": entry}}))
    assert intervals_missing_their_estimate(tmp_path) == [
        "m/seed0/metrics.json: subgroup.ita.binary.auc.gap = 0.0792 outside [0.0462, 0.0693]"]
