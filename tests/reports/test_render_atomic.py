"""Rendering a report is all or nothing: an interrupted render leaves the previous report whole and
byte-identical, a finished one replaces it (stale plots gone), and other files in the folder stay."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from runfolder_builder import build_run, write_cards

from benchbox.reports import plots
from benchbox.reports.render import render_report


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def run_and_cards(tmp_path_factory):
    root = tmp_path_factory.mktemp("atomic")
    return build_run(root, methods=("msfa", "recall_ensemble"), failed=()), write_cards(root / "registry")


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_an_interrupted_render_leaves_the_previous_report_byte_identical(run_and_cards, tmp_path, monkeypatch):
    run_dir, cards = run_and_cards
    out = tmp_path / "report"
    render_report(run_dir, out, registry_dir=cards, show_progress=False)
    before = snapshot(out)
    assert {"README.md", "subgroups.md", "run.json", "plots/roc_binary.png", "plots/saliency_msfa.png"} <= set(before)
    # the saliency grids are drawn after the boards' ROC curves and before subgroups.md and README.md
    monkeypatch.setattr(plots, "saliency_grid", interrupt)
    with pytest.raises(KeyboardInterrupt):
        render_report(run_dir, out, registry_dir=cards, show_progress=False)
    assert snapshot(out) == before
    assert leftovers(tmp_path) == []  # the half-drawn temporary folder is gone too


def test_a_finished_render_replaces_the_whole_report(run_and_cards, tmp_path):
    run_dir, cards = run_and_cards
    out = tmp_path / "report"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "roc_gone_method.png").write_bytes(b"an earlier run's plot")
    (out / "subgroups.md").write_text("an earlier run's subgroups")
    os.chmod(out, 0o750)
    render_report(run_dir, out, registry_dir=cards, show_progress=False)
    files = snapshot(out)
    assert "plots/roc_gone_method.png" not in files and files["subgroups.md"].startswith(b"# Subgroups")
    assert all(f"({name})".encode() in files["README.md"] for name in files if name.startswith("plots/roc"))
    assert stat.S_IMODE(out.stat().st_mode) == 0o750  # the folder keeps its mode, not mkdtemp's 0700
    assert leftovers(tmp_path) == []


def test_a_folder_holding_other_files_keeps_them(run_and_cards, tmp_path, monkeypatch):
    """leaderboards/ holds the gate's baselines beside the report: they are never moved or removed."""
    run_dir, cards = run_and_cards
    out = tmp_path / "leaderboards"
    (out / "baselines").mkdir(parents=True)
    (out / "baselines" / "smoke.json").write_text('{"benchbox_gate_baseline": 2}')
    render_report(run_dir, out, registry_dir=cards, show_progress=False)
    (out / "plots" / "forest_gone.png").write_bytes(b"stale")
    before = snapshot(out)
    monkeypatch.setattr(plots, "forest", interrupt)  # subgroups.md's plots, drawn before README.md
    with pytest.raises(KeyboardInterrupt):
        render_report(run_dir, out, registry_dir=cards, show_progress=False)
    assert snapshot(out) == before
    monkeypatch.undo()
    render_report(run_dir, out, registry_dir=cards, show_progress=False)
    after = snapshot(out)
    assert after["baselines/smoke.json"] == b'{"benchbox_gate_baseline": 2}'
    assert "plots/forest_gone.png" not in after and after["README.md"] == before["README.md"]
    assert leftovers(tmp_path) == []


def test_report_files_are_group_readable(run_and_cards, tmp_path):
    run_dir, cards = run_and_cards
    previous = os.umask(0o022)
    try:
        render_report(run_dir, tmp_path / "report", registry_dir=cards, show_progress=False)
    finally:
        os.umask(previous)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "report").rglob("*") if p.is_file()}
    assert modes == {0o644}
    assert stat.S_IMODE((tmp_path / "report").stat().st_mode) == 0o755
