"""Turn a dataset spec (`synthderm`, `synthderm:DIR`, `ham10000:DIR`, `isic2018:DIR`, `csv:FILE`)
into a loaded Dataset."""

from __future__ import annotations

import hashlib
from pathlib import Path

from filelock import FileLock

from ..errors import BenchboxError
from ..paths import cache_dir
from .dataset import Dataset

DATASET_KINDS = ("synthderm", "ham10000", "isic2018", "csv")
DEFAULT_SYNTHDERM_SEED = 0


def default_synthderm_dir() -> Path:
    """The built-in dataset, generated on first use into the cache; keyed by the generator's source,
    so a changed generator never serves a stale dataset."""
    generator = hashlib.sha256((Path(__file__).parent / "synthderm.py").read_bytes()).hexdigest()[:12]
    return cache_dir() / "synthderm" / f"default-{generator}-seed{DEFAULT_SYNTHDERM_SEED}"


def ensure_default_synthderm() -> Path:
    from .synthderm import generate

    root = default_synthderm_dir()
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):  # two processes starting at once generate it once
        if not (root / "HAM10000_metadata.csv").exists():
            generate(root, seed=DEFAULT_SYNTHDERM_SEED)
    return root


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """Split 'kind:PATH'; only synthderm may omit the path."""
    kind, _, path = spec.partition(":")
    if kind not in DATASET_KINDS:
        raise BenchboxError(
            f"unknown dataset {spec!r}: use synthderm, synthderm:DIR, ham10000:DIR, isic2018:DIR or csv:FILE."
        )
    if not path and kind != "synthderm":
        raise BenchboxError(f"dataset {spec!r} needs a path: {kind}:PATH")
    if path and not Path(path).exists():
        raise BenchboxError(f"dataset {spec!r}: {path} does not exist.")
    return kind, Path(path) if path else None


def load_dataset(spec: str, only_present: bool = False, on_bad_image: str = "fail", progress: bool = True) -> Dataset:
    """Load a dataset by spec (see the module docstring), checked, hashed and with skin tones."""
    kind, path = parse_spec(spec)
    options = dict(only_present=only_present, on_bad_image=on_bad_image, progress=progress)
    if kind in ("synthderm", "ham10000"):
        from .ham10000 import load_ham10000

        root = path if path is not None else ensure_default_synthderm()
        return load_ham10000(root, name=kind, **options)
    if kind == "isic2018":
        from .isic2018 import load_isic2018

        return load_isic2018(path, **options)
    from .csv_table import load_csv

    return load_csv(path, **options)
