"""One configuration per run folder: run.json records it, another configuration into the same --out
is refused before anything is written (saying what differs and what to do), while more methods or
seeds with the same configuration join the folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchbox import cli
from benchbox.data.synthderm import generate
from benchbox.errors import BenchboxError
from benchbox.runner.config import RunConfig
from benchbox.runner.run import execute

from runner_tiny_methods import TinyLinear


def _config(data: Path, out: Path, **extra) -> RunConfig:
    options = dict(methods=["tiny_linear"], data=f"synthderm:{data}", profile="smoke", seeds=[0], out=str(out),
                   explain_n=8, device="cpu")
    options.update(extra)
    return RunConfig(**options)


pytestmark = pytest.mark.usefixtures("without_run_report")


@pytest.fixture(scope="module")
def pristine(tiny_synthderm, tmp_path_factory, without_run_report) -> Path:
    out = tmp_path_factory.mktemp("config") / "pristine"
    assert execute(_config(tiny_synthderm, out), progress=False) == 0
    return out


@pytest.fixture
def run_dir(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "run"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_run_json_records_the_configuration(pristine, tiny_synthderm):
    run = json.loads((pristine / "run.json").read_text())
    assert run["config"]["faithfulness"] == "fast" and run["config"]["profile"] == "smoke"
    assert run["config"]["data"] == f"synthderm:{tiny_synthderm}" and run["config"]["seeds"] == [0]
    assert run["pretrained"] == {"tiny_linear": False} and run["evaluation"]["explain_n"] == 8


@pytest.mark.parametrize(("change", "difference"), [
    ({"faithfulness": "none"}, "faithfulness: 'fast' in the folder, 'none' now"),
    ({"profile": "quick"}, "profile: 'smoke' in the folder, 'quick' now"),
    ({"explain_n": 4}, "explain_n: 8 in the folder, 4 now"),
    ({"on_bad_image": "skip"}, "on_bad_image: 'fail' in the folder, 'skip' now"),
])
def test_another_configuration_into_the_same_folder_is_refused_and_nothing_changes(
        run_dir, tiny_synthderm, change, difference):
    before = snapshot(run_dir)
    fits = TinyLinear.fits
    with pytest.raises(BenchboxError) as refused:
        execute(_config(tiny_synthderm, run_dir, **change), progress=False)
    message = str(refused.value)
    assert f"{run_dir} holds a run of another configuration" in message and difference in message
    assert "another --out" in message
    assert (f"benchbox run --methods tiny_linear --data synthderm:{tiny_synthderm} --profile smoke --seeds 0 "
            f"--device cpu --explain-n 8 --out {run_dir}") in message  # the folder's own configuration
    assert snapshot(run_dir) == before and TinyLinear.fits == fits


def test_other_data_into_the_same_folder_is_refused_naming_both_datasets(run_dir, tiny_synthderm, tmp_path):
    other = tmp_path / "other-synth"
    generate(other, n_lesions=40, size=48, seed=4)
    before = snapshot(run_dir)
    with pytest.raises(BenchboxError, match=r"data: 'synthderm:.*' \(sha256 [0-9a-f]{12}…\) in the folder, "
                                            rf"'synthderm:{other}' \(sha256 [0-9a-f]{{12}}…\) now"):
        execute(_config(other, run_dir), progress=False)
    assert snapshot(run_dir) == before


def test_the_cli_refuses_with_exit_2_and_no_traceback(run_dir, tiny_synthderm, capsys):
    code = cli.main(["run", "--methods", "tiny_linear", "--data", f"synthderm:{tiny_synthderm}", "--profile", "smoke",
                     "--seeds", "0", "--explain-n", "8", "--device", "cpu", "--faithfulness", "none",
                     "--out", str(run_dir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "faithfulness: 'fast' in the folder, 'none' now" in err and "Traceback" not in err


def test_more_methods_and_seeds_with_the_same_configuration_join_the_folder(run_dir, tiny_synthderm, capsys):
    capsys.readouterr()
    config = _config(tiny_synthderm, run_dir, methods=["tiny_linear", "tiny_binary"], seeds=[0, 1], device="auto")
    assert execute(config, progress=False) == 0
    out = capsys.readouterr().out
    assert "[1/4] tiny_linear/seed0: done earlier, skipped" in out and "all 4 job(s) done" in out
    run = json.loads((run_dir / "run.json").read_text())
    assert sorted(run["jobs"]) == ["tiny_binary/seed0", "tiny_binary/seed1", "tiny_linear/seed0", "tiny_linear/seed1"]
    assert run["config"]["methods"] == ["tiny_linear", "tiny_binary"] and run["config"]["seeds"] == [0, 1]


def test_a_damaged_run_json_is_refused_naming_it_until_removed(run_dir, tiny_synthderm, capsys):
    (run_dir / "run.json").write_text('{"run_id": "synth')
    damaged = rf"{run_dir}/run.json is damaged .* delete {run_dir}/run.json and run again"
    with pytest.raises(BenchboxError, match=damaged):
        execute(_config(tiny_synthderm, run_dir), progress=False)
    (run_dir / "run.json").unlink()
    capsys.readouterr()
    assert execute(_config(tiny_synthderm, run_dir), progress=False) == 0
    assert "done earlier, skipped" in capsys.readouterr().out
