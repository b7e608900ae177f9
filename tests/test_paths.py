"""Atomic writes: whole files or none, with the mode an ordinary open() gives under the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from benchbox.paths import atomic_write, current_umask, default_mode
from benchbox.runner.store import write_csv, write_json, write_npz


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it after."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_files_follow_the_umask_like_open(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write(tmp_path / "atomic.txt", lambda tmp: Path(tmp).write_text("x"))
    (tmp_path / "plain.txt").write_text("x")
    assert mode(tmp_path / "atomic.txt") == expected == mode(tmp_path / "plain.txt")
    assert current_umask() == mask and os.umask(mask) == mask  # read without changing it
    assert default_mode() == expected and default_mode(directory=True) == 0o777 & ~mask


def test_run_folder_writers_make_group_readable_files(tmp_path, umask):
    umask(0o022)
    write_json(tmp_path / "run.json", {"a": 1})
    write_csv(tmp_path / "predictions.csv", pd.DataFrame({"image_id": ["x"]}))
    write_npz(tmp_path / "explanations.npz", masks=[[True]])
    assert [mode(tmp_path / name) for name in ("run.json", "predictions.csv", "explanations.npz")] == [0o644] * 3


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def half_written(tmp):
        Path(tmp).write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_written)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
