"""Every option is checked before anything is written (issue 18, point 8)."""

import pytest

from benchbox.cli import main
from benchbox.errors import BenchboxError
from benchbox.runner.config import RunConfig


@pytest.mark.parametrize("seeds, message", [
    ([-1], "--seeds must be integers from 0 to 4294967295; [-1] are not"),
    ([0, 2**32], "--seeds must be integers from 0 to 4294967295; [4294967296] are not"),
    ([1, 0, 1], "--seeds lists [1] more than once"),
    ([], "--seeds needs at least one seed"),
])
def test_bad_seeds_are_refused_by_the_configuration(seeds, message):
    with pytest.raises(BenchboxError) as error:
        RunConfig(methods=["msfa"], seeds=seeds)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("device, accepted", [("cpu", True), ("auto", True), ("cuda", True), ("cuda:1", True),
                                              ("tpu", False), ("cuda:x", False), ("CPU", False)])
def test_device_names_are_checked(device, accepted):
    if accepted:
        assert RunConfig(methods=["msfa"], device=device).device == device
    else:
        with pytest.raises(BenchboxError, match="--device must be auto, cpu, cuda or cuda:N"):
            RunConfig(methods=["msfa"], device=device)


@pytest.mark.parametrize("argv", [["--seeds", "-3"], ["--seeds", "99999999999"], ["--seeds", "0,0"],
                                  ["--device", "tpu"]])
def test_the_command_line_exits_2_before_the_run_folder_exists(tmp_path, capsys, argv):
    out = tmp_path / "run"
    assert main(["run", "--methods", "msfa", "--profile", "smoke", "--out", str(out), *argv]) == 2
    assert capsys.readouterr().err.startswith("benchbox: error: --")
    assert not out.exists()


def test_an_unwritable_folder_is_the_environment_exit_3(tmp_path, capsys, monkeypatch):
    def refuse(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "ro" / "run.json"))

    monkeypatch.setattr("benchbox.runner.commands.run_command", refuse)  # bound when the parser is built
    assert main(["run", "--methods", "msfa"]) == 3
    err = capsys.readouterr().err
    assert "Permission denied" in err and "ro/run.json" in err and "Traceback" not in err


class Payload:
    """Pickled into a checkpoint: an object torch's weights_only loader refuses."""


def test_a_cached_checkpoint_carrying_code_fails_its_job_saying_how_to_retrain(tiny_synthderm, tmp_path):
    import json

    import torch

    from benchbox.paths import cache_dir
    from benchbox.runner.run import execute

    options = dict(methods=["tiny_linear"], data=f"synthderm:{tiny_synthderm}", profile="smoke", explain_n=0,
                   faithfulness="none", device="cpu", seeds=[7])
    assert execute(RunConfig(out=str(tmp_path / "first"), **options), progress=False) == 0
    record = json.loads((tmp_path / "first" / "tiny_linear" / "seed7" / "job.json").read_text())
    folder = cache_dir() / "checkpoints" / "tiny_linear" / record["fit_key"][:20]  # runner/job.py checkpoint_dir
    torch.save({"weight": Payload()}, folder / "net.pt")
    assert execute(RunConfig(out=str(tmp_path / "second"), **options), progress=False) == 1
    error = json.loads((tmp_path / "second" / "run.json").read_text())["jobs"]["tiny_linear/seed7"]["error"]
    assert "it carries pickled objects other than tensors" in error
    assert f"delete {folder} and re-run to retrain this job" in error


def test_an_out_that_is_a_file_is_bad_input(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["run", "--methods", "msfa", "--profile", "smoke", "--out", str(tmp_path / "afile")]) == 2
    assert capsys.readouterr().err.startswith(f"benchbox: error: --out {tmp_path / 'afile'} is a file, not a folder")
    assert (tmp_path / "afile").read_text() == "x"
