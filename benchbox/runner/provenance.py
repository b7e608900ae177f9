"""What a result came from: code version, library versions, hardware."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import benchbox

PACKAGE_DIR = Path(benchbox.__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
LIBRARIES = (
    "numpy", "pandas", "scipy", "scikit-learn", "statsmodels", "torch", "torchvision", "timm",
    "segmentation-models-pytorch", "grad-cam", "pillow", "imagehash", "matplotlib", "tabulate",
)


@lru_cache(maxsize=1)
def source_hash() -> str:
    """sha256 of the package's Python sources and the method cards: the code that makes a result."""
    from ..package_data import cards_dir

    digest = hashlib.sha256()
    named = [(path.relative_to(REPO_DIR).as_posix(), path) for path in sorted(PACKAGE_DIR.rglob("*.py"))]
    named += [(f"registry/{path.name}", path) for path in sorted(cards_dir().glob("*.yaml"))]  # checkout or wheel
    for name, path in named:
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def git_version() -> str | None:
    """`git describe --always --dirty` of the checkout, when benchbox runs from one."""
    if not (REPO_DIR / ".git").exists():
        return None
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=REPO_DIR, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def code_version() -> dict:
    return {"benchbox": benchbox.__version__, "git": git_version(), "source_sha256": source_hash()}


def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hardware(device: str) -> dict:
    import torch

    info = {
        "machine": platform.machine(),
        "system": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info
