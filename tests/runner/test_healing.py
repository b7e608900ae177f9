"""A run folder heals: a finished job whose sealed stage file is missing or changed is recomputed
on the next run (with what was computed from it, saying so), the method-level metrics are rebuilt,
and until then `benchbox report` names the damaged file and the command that repairs it (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchbox import cli
from benchbox.runner.config import RunConfig
from benchbox.runner.run import execute
from benchbox.runner.store import damaged_stage_files, file_sha256, read_json, write_job_folder

from runner_tiny_methods import TinyLinear

SEEDS = (0, 1)


def _config(data: Path, out: Path) -> RunConfig:
    return RunConfig(methods=["tiny_linear"], data=f"synthderm:{data}", profile="smoke", seeds=list(SEEDS),
                     out=str(out), explain_n=8, device="cpu")


pytestmark = pytest.mark.usefixtures("without_run_report")


@pytest.fixture(scope="module")
def pristine(tiny_synthderm, tmp_path_factory, without_run_report) -> Path:
    out = tmp_path_factory.mktemp("healing") / "pristine"
    assert execute(_config(tiny_synthderm, out), progress=False) == 0
    return out


@pytest.fixture
def run_dir(pristine, tmp_path) -> Path:
    """A copy of the finished two-seed run, to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "run"))


def rerun(run_dir: Path, data: Path, capsys) -> str:
    fits = TinyLinear.fits
    assert execute(_config(data, run_dir), progress=False) == 0
    assert TinyLinear.fits == fits  # healing reuses the trained models from the checkpoint cache
    return capsys.readouterr().out


def report(run_dir: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["report", str(run_dir), "--out", str(run_dir.parent / "rendered")])
    return code, capsys.readouterr().err


def repair_command(data: Path, run_dir: Path) -> str:
    return (f"benchbox run --methods tiny_linear --data synthderm:{data} --profile smoke --seeds 0,1 "
            f"--device cpu --explain-n 8 --out {run_dir}")


def assert_refused(run_dir: Path, data: Path, capsys, *expected: str) -> None:
    code, err = report(run_dir, capsys)
    assert code == 2 and "Traceback" not in err
    for text in (*expected, repair_command(data, run_dir)):
        assert text in err


def assert_sound(run_dir: Path, pristine: Path, files=("predictions.csv", "metrics.json"), remeasured=False) -> None:
    """Every sealed file matches its seal, the named files are byte-identical to the pristine run's and
    so are the method-level metrics (but for latency and memory when the job measured them again)."""
    for seed in SEEDS:
        job = run_dir / "tiny_linear" / f"seed{seed}"
        assert damaged_stage_files(job, read_json(job / "done.json")) == {}
        for name in files:
            assert (job / name).read_bytes() == (pristine / "tiny_linear" / f"seed{seed}" / name).read_bytes(), name
    pooled = read_json(run_dir / "tiny_linear" / "metrics.json")["metrics"]
    expected = read_json(pristine / "tiny_linear" / "metrics.json")["metrics"]
    if remeasured:
        for name in read_json(pristine / "tiny_linear" / "seed0" / "efficiency.json")["metrics"]:
            pooled.pop(name), expected.pop(name)
    assert pooled == expected and len(pooled) > 100


def replace_cell(path: Path, line: int, column: str, value: str) -> None:
    """Edit one cell of a CSV as text, leaving every other byte as written."""
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    cells = lines[line - 1].rstrip("\n").split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells) + "\n"
    path.write_text("".join(lines))


def test_an_intact_run_is_verified_and_skipped(run_dir, tiny_synthderm, capsys):
    done = read_json(run_dir / "tiny_linear" / "seed0" / "done.json")
    assert set(done["files"]) == {"predictions.csv", "isic_submission.csv", "efficiency.json", "explanations.npz",
                                  "xai.json", "metrics.json"}
    assert done["files"]["metrics.json"] == file_sha256(run_dir / "tiny_linear" / "seed0" / "metrics.json")
    out = rerun(run_dir, tiny_synthderm, capsys)
    assert out.count("done earlier, skipped") == 2 and "recomputing" not in out


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_damaged_metrics_json_is_named_by_the_report_and_recomputed(run_dir, pristine, tiny_synthderm, capsys,
                                                                       damage):
    job = run_dir / "tiny_linear" / "seed0"
    stamp = (job / "predictions.csv").stat().st_mtime_ns
    if damage == "deleted":
        (job / "metrics.json").unlink()
        problem = "metrics.json is missing"
    else:
        (job / "metrics.json").write_bytes((job / "metrics.json").read_bytes()[:200])
        problem = "metrics.json is damaged (its sha256 is not the one done.json recorded"
    assert_refused(run_dir, tiny_synthderm, capsys, f"{job}/{problem}")
    out = rerun(run_dir, tiny_synthderm, capsys)
    assert f"tiny_linear/seed0: {problem}" in out and "; recomputing it" in out
    assert "[2/2] tiny_linear/seed1: done earlier, skipped" in out
    assert f"WARNING benchbox.run: tiny_linear/seed0: {problem}" in (run_dir / "run.log").read_text()
    assert (job / "predictions.csv").stat().st_mtime_ns == stamp  # only the damaged stage is redone
    assert_sound(run_dir, pristine)
    assert report(run_dir, capsys)[0] == 0


@pytest.mark.parametrize("damage", ["nan", "deleted"])
def test_damaged_predictions_are_recomputed_with_the_metrics_computed_from_them(run_dir, pristine, tiny_synthderm,
                                                                                capsys, damage):
    job = run_dir / "tiny_linear" / "seed1"
    if damage == "nan":
        replace_cell(job / "predictions.csv", 5, "p_mel", "nan")
        problem = "predictions.csv is damaged"
    else:
        (job / "predictions.csv").unlink()
        problem = "predictions.csv is missing"
    metrics_stamp = (job / "metrics.json").stat().st_mtime_ns
    assert_refused(run_dir, tiny_synthderm, capsys, f"{job}/{problem}")
    out = rerun(run_dir, tiny_synthderm, capsys)
    assert (f"tiny_linear/seed1: {problem}" in out
            and "recomputing it, with isic_submission.csv and metrics.json computed from it" in out)
    assert (job / "metrics.json").stat().st_mtime_ns != metrics_stamp
    assert_sound(run_dir, pristine, files=("predictions.csv", "isic_submission.csv", "metrics.json"))


def test_deleted_explanations_are_recomputed_with_their_scores(run_dir, pristine, tiny_synthderm, capsys):
    job = run_dir / "tiny_linear" / "seed0"
    (job / "explanations.npz").unlink()
    assert_refused(run_dir, tiny_synthderm, capsys, f"{job}/explanations.npz is missing")
    out = rerun(run_dir, tiny_synthderm, capsys)
    assert "explanations.npz is missing; recomputing it, with xai.json and metrics.json computed from it" in out
    assert_sound(run_dir, pristine, files=("predictions.csv", "xai.json", "metrics.json"))
    original = pristine / "tiny_linear" / "seed0" / "explanations.npz"
    with np.load(job / "explanations.npz") as new, np.load(original) as old:
        assert set(new.files) == set(old.files)
        for name in old.files:
            np.testing.assert_array_equal(new[name], old[name])


def test_a_damaged_done_json_recomputes_every_stage_of_its_job(run_dir, pristine, tiny_synthderm, capsys):
    job = run_dir / "tiny_linear" / "seed0"
    (job / "done.json").write_text('{"job_key": "')
    assert_refused(run_dir, tiny_synthderm, capsys, f"{job}/done.json is damaged")
    out = rerun(run_dir, tiny_synthderm, capsys)
    assert ("tiny_linear/seed0: done.json is damaged, so its stage files cannot be verified; "
            "recomputing every stage") in out
    assert_sound(run_dir, pristine, files=("predictions.csv", "xai.json"), remeasured=True)


def test_a_damaged_method_level_metrics_json_is_named_and_rebuilt(run_dir, pristine, tiny_synthderm, capsys):
    pooled = run_dir / "tiny_linear" / "metrics.json"
    pooled.write_text(pooled.read_text()[:100])
    assert_refused(run_dir, tiny_synthderm, capsys,
                   f"{pooled} is damaged (its sha256 is not the one run.json recorded)")
    out = rerun(run_dir, tiny_synthderm, capsys)
    assert out.count("done earlier, skipped") == 2
    assert_sound(run_dir, pristine)
    assert pooled.read_bytes() == (pristine / "tiny_linear" / "metrics.json").read_bytes()


@pytest.mark.parametrize(("value", "problem"), [
    ("nan", "holds a missing, NaN or non-numeric p_mel at line 4 (image "),
    ("0.9", "holds probability rows that do not sum to 1 (tolerance 0.0001) at line 4 (image "),
])
def test_unsealed_predictions_that_are_not_probabilities_are_refused_and_recomputed(
        run_dir, pristine, tiny_synthderm, capsys, value, problem):
    """Without done.json (a killed run, or a folder written by hand) the content itself is checked."""
    job = run_dir / "tiny_linear" / "seed0"
    for seed in SEEDS:
        (run_dir / "tiny_linear" / f"seed{seed}" / "done.json").unlink()
    replace_cell(job / "predictions.csv", 4, "p_mel", value)
    image = pd.read_csv(job / "predictions.csv", dtype=str)["image_id"][2]
    assert_refused(run_dir, tiny_synthderm, capsys, f"{job}/predictions.csv {problem}{image})")
    out = rerun(run_dir, tiny_synthderm, capsys)
    assert f"tiny_linear/seed0: predictions.csv {problem}{image})" in out and "; recomputing it" in out
    assert_sound(run_dir, pristine)


def test_an_entry_written_outside_the_runner_is_sealed_and_verified(run_dir, tiny_synthderm, capsys):
    """write_job_folder: how `benchbox score` adds an outside model's entry to a run folder."""
    source = run_dir / "tiny_linear" / "seed0"
    entry = run_dir / "outside" / "seed0"
    entry.mkdir(parents=True)
    (entry / "explanations.npz").write_bytes(b"an earlier entry's file")
    metrics = {**read_json(source / "metrics.json"), "method": "outside"}
    frame = pd.read_csv(source / "predictions.csv", dtype={"image_id": str, "lesion_id": str})
    done = write_job_folder(entry, {"predictions.csv": frame, "metrics.json": metrics},
                            {"job_key": "outside:predictions.csv sha256 ...", "source": "benchbox score"})
    assert sorted(p.name for p in entry.iterdir()) == ["done.json", "metrics.json", "predictions.csv"]
    assert done == read_json(entry / "done.json") and done["source"] == "benchbox score"
    assert done["files"] == {name: file_sha256(entry / name) for name in ("predictions.csv", "metrics.json")}
    info = read_json(run_dir / "run.json")
    info["jobs"]["outside/seed0"] = {"status": "done", "error": None}
    (run_dir / "run.json").write_text(json.dumps(info))
    assert report(run_dir, capsys)[0] == 0
    assert "outside" in (run_dir.parent / "rendered" / "README.md").read_text()
    replace_cell(entry / "predictions.csv", 3, "p_nv", "0.5")
    assert damaged_stage_files(entry, done) == {
        "predictions.csv": "is damaged (its sha256 is not the one done.json recorded when the job finished)"}
    assert_refused(run_dir, tiny_synthderm, capsys, f"{entry}/predictions.csv is damaged")
    with pytest.raises(ValueError, match="not stage files"):
        write_job_folder(entry, {"notes.txt": {}}, {"job_key": "x"})
