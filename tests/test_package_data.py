"""The shipped cards, suites and gate policy are found as package data, and a user's own folders override them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from benchbox.errors import BenchboxError
from benchbox.package_data import cards_dir, metrics_dir, shipped_dir

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_checkout_folders_are_the_shipped_packages(monkeypatch):
    """The editable install maps benchbox._registry / benchbox._metrics onto the top-level folders: one copy."""
    monkeypatch.delenv("BENCHBOX_REGISTRY", raising=False)
    monkeypatch.delenv("BENCHBOX_METRICS", raising=False)
    assert cards_dir() == REPO_ROOT / "registry" and metrics_dir() == REPO_ROOT / "metrics"
    assert (metrics_dir() / "suites.yaml").is_file() and (metrics_dir() / "gate.yaml").is_file()


def test_an_uninstalled_data_package_is_named():
    with pytest.raises(BenchboxError, match=r"data package benchbox\._nothing is not installed.*reinstall benchbox"):
        shipped_dir("benchbox._nothing")


def test_benchbox_metrics_points_suites_and_gate_at_a_folder_of_ones_own(tmp_path):
    suites = yaml.safe_load((REPO_ROOT / "metrics" / "suites.yaml").read_text())
    suites["bootstrap"]["n_resamples"] = 17
    (tmp_path / "suites.yaml").write_text(yaml.safe_dump(suites))
    policy = yaml.safe_load((REPO_ROOT / "metrics" / "gate.yaml").read_text())
    policy["alpha"] = 0.031
    (tmp_path / "gate.yaml").write_text(yaml.safe_dump(policy))
    code = textwrap.dedent(
        """
        from benchbox.gate import DEFAULT_POLICY, load_policy
        from benchbox.metrics.config import DEFAULT_SUITES, load_config
        print(DEFAULT_SUITES.parent, DEFAULT_POLICY.parent, load_config().bootstrap.n_resamples, load_policy().alpha)
        """
    )
    env = {**os.environ, "BENCHBOX_METRICS": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path), str(tmp_path), "17", "0.031"]
