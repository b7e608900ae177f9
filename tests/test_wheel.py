"""benchbox works installed: a wheel built from the checkout, installed into a fresh folder, used from elsewhere.

The wheel is built with `python -m build --wheel --no-isolation` (about 1 s, offline; with build's
isolated environment it also fetches setuptools, a few seconds and a network or a local index) from
a copy of the files a build reads, so that the checkout gets no build/ or egg-info folder and two
test runs do not race. The installed copy then runs from another working directory with
PYTHONPATH=SITE: `benchbox ls`, and the cheapest real run the CLI has (msfa, the smoke profile, one
seed, on a 40-lesion synthderm folder), pinned to one CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "README.md", "benchbox", "registry", "metrics")
HOSTED = ("dual_task", "dual_task_unet_r34", "efficientnet_b0", "efficientnet_b0_128", "inception_v3", "msfa", "recall_ensemble",
          "recall_ensemble_recalibrated", "resnet50", "soft_attention", "xception")
LISTED = ("colour_knn", *HOSTED)  # `benchbox ls` in name order: benchbox's known-answer baseline, then the papers' methods


# `python -m benchbox.cli ARGS` on one CPU (the runner sets torch's threads to the CPUs it may use);
# the child pins itself, since a preexec_fn is unsafe in a parent that runs threads (torch's).
ONE_CPU_CLI = (
    "import os, runpy, sys\n"
    "if hasattr(os, 'sched_setaffinity'): os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
    "runpy.run_module('benchbox.cli', run_name='__main__', alter_sys=True)"
)


def _run(args: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(source)], source, dict(os.environ), 300)
    wheels = list(out.glob("benchbox-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
         target, dict(os.environ), 300)  # fmt: skip
    return target


@pytest.fixture(scope="module")
def elsewhere(site, tmp_path_factory) -> tuple[Path, dict]:
    """A working directory outside the checkout and an environment that sees only the installed copy."""
    folder = tmp_path_factory.mktemp("elsewhere")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "BENCHBOX_REGISTRY", "BENCHBOX_METRICS")}
    env.update(PYTHONPATH=str(site), BENCHBOX_CACHE=str(folder / "cache"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return folder, env


def test_the_wheel_holds_every_module_and_the_data_and_no_top_level_registry(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {path.relative_to(REPO_ROOT).as_posix() for path in (REPO_ROOT / "benchbox").rglob("*.py")}
    assert modules - names == set(), "add their subpackage to [tool.setuptools] packages in pyproject.toml"
    shipped = {f"benchbox/_registry/{path.name}" for path in (REPO_ROOT / "registry").glob("*.yaml")}
    assert len(shipped) == 16 and shipped <= names  # 12 cards + 4 shared bases
    assert {"benchbox/_metrics/suites.yaml", "benchbox/_metrics/gate.yaml", "benchbox/_registry/README.md"} <= names
    assert any(name.startswith("benchbox/splits/canonical/") and name.endswith(".csv") for name in names)
    assert {name.split("/")[0] for name in names} == {"benchbox", "benchbox-0.1.0.dist-info"}


def test_ls_from_the_installed_wheel_lists_the_hosted_methods(site, elsewhere):
    folder, env = elsewhere
    where = _run([sys.executable, "-c", "import benchbox; print(benchbox.__file__)"], folder, env, 60)
    assert Path(where.stdout.strip()).is_relative_to(site)  # the installed copy, not the checkout
    listed = _run([sys.executable, "-m", "benchbox.cli", "ls"], folder, env, 120).stdout
    table = [line.split()[0] for line in listed.splitlines()[2:] if line.strip() and not line.startswith(" ")][: len(LISTED)]
    assert tuple(table) == LISTED
    cards = [line.split("card: ", 1)[1] for line in listed.splitlines() if line.strip().startswith("card: ")]
    assert len(cards) == len(LISTED) and all(Path(card).parent == site / "benchbox" / "_registry" for card in cards)


@pytest.mark.slow
def test_a_smoke_run_from_the_installed_wheel(site, elsewhere):
    folder, env = elsewhere
    cli = [sys.executable, "-c", ONE_CPU_CLI]
    _run([*cli, "data", "synth", "--out", "derm", "--n-lesions", "40", "--size", "64", "--difficulty", "easy"], folder, env, 120)
    _run([*cli, "split", "synthderm:derm", "--out", "split.csv"], folder, env, 120)
    _run([*cli, "run", "--methods", "msfa", "--profile", "smoke", "--data", "synthderm:derm", "--split", "split.csv",
          "--seeds", "0", "--explain-n", "2", "--faithfulness", "none", "--out", "run", "--quiet"], folder, env, 300)  # fmt: skip
    if hasattr(os, "sched_setaffinity"):
        assert json.loads((folder / "run" / "run.json").read_text())["hardware"]["torch_threads"] == 1
    metrics = json.loads((folder / "run" / "msfa" / "metrics.json").read_text())
    assert metrics["task"] == "multiclass" and 0 <= metrics["metrics"]["accuracy"]["value"] <= 1
    report = (folder / "run" / "report" / "README.md").read_text()
    assert "0.788" in report  # msfa's claimed accuracy: the report read the installed card
