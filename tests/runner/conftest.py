"""A tiny synthderm dataset for the runner tests (the tiny methods register on import)."""

from __future__ import annotations

from pathlib import Path

import pytest
import runner_tiny_methods  # noqa: F401  (registers tiny_linear and broken)

from benchbox.data.synthderm import generate


@pytest.fixture(scope="session")
def tiny_synthderm(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synth"
    generate(root, n_lesions=120, size=48, seed=3)
    return root


@pytest.fixture(scope="module")
def without_run_report():
    """For tests of the run folder alone: the runner's own report rendering (plots) is skipped."""
    from benchbox.runner import run as run_module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "_report", lambda run_dir, record, progress: None)
        yield
