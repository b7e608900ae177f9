"""Where benchbox finds the data it ships (method cards, metric suites, gate policy) and a user's own.

The files live in the checkout's top-level `registry/` and `metrics/` folders, where a reader finds
and edits them; pyproject.toml installs those folders as the packages `benchbox._registry` and
`benchbox._metrics`, so a wheel and an editable checkout read them the same way, through
importlib.resources. `BENCHBOX_REGISTRY` (cards) and `BENCHBOX_METRICS` (suites.yaml, gate.yaml)
point at a user's own folders instead.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .errors import BenchboxError

REGISTRY_ENV = "BENCHBOX_REGISTRY"
METRICS_ENV = "BENCHBOX_METRICS"


def shipped_dir(package: str) -> Path:
    """The folder of one of benchbox's data packages, as a filesystem path."""
    try:
        folder = resources.files(package)
    except ModuleNotFoundError:
        raise BenchboxError(
            f"benchbox's data package {package} is not installed: this install predates it; "
            "reinstall benchbox (`pip install -e .` in a checkout, or `pip install benchbox`)."
        ) from None
    if not isinstance(folder, Path):  # e.g. imported from a zip: the data is read as files
        raise BenchboxError(f"benchbox's data package {package} is not on the filesystem ({folder}); install benchbox unzipped.")
    return folder


def cards_dir() -> Path:
    """The method card folder: $BENCHBOX_REGISTRY, else the cards shipped with benchbox."""
    override = os.environ.get(REGISTRY_ENV)
    return Path(override) if override else shipped_dir("benchbox._registry")


def metrics_dir() -> Path:
    """The folder of suites.yaml and gate.yaml: $BENCHBOX_METRICS, else the ones shipped with benchbox."""
    override = os.environ.get(METRICS_ENV)
    return Path(override) if override else shipped_dir("benchbox._metrics")
