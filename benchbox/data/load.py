"""Turn a dataset spec (`synthderm`, `synthderm-easy`, `synthderm:DIR`, `ham10000:DIR`, `isic2018:DIR`,
`csv:FILE`) into a loaded Dataset. `synthderm-easy` is the built-in generator's easy variant (600
lesions), small and clearly learnable, for the CI regression gate's tiny models."""

from __future__ import annotations

import hashlib
from pathlib import Path

from filelock import FileLock

from ..errors import BenchboxError
from ..paths import cache_dir
from .dataset import Dataset
from .ita import CORRECTIONS, DEFAULT_CORRECTION

DATASET_KINDS = ("synthderm", "synthderm-easy", "ham10000", "isic2018", "csv")
BUILT_IN = ("synthderm", "synthderm-easy")  # the kinds that may omit the path
DEFAULT_SYNTHDERM_SEED = 0
EASY_SYNTHDERM = dict(n_lesions=600, size=128, seed=0, difficulty="easy")
GENERATOR_SOURCES = ("synthderm.py", "portable_math.py")


def _generator_hash() -> str:
    digest = hashlib.sha256()
    for name in GENERATOR_SOURCES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:12]


def default_synthderm_dir() -> Path:
    """The built-in dataset, generated on first use into the cache; keyed by the generator's source
    (synthderm.py and the portable_math it renders with), so a changed generator never serves a
    stale dataset."""
    return cache_dir() / "synthderm" / f"default-{_generator_hash()}-seed{DEFAULT_SYNTHDERM_SEED}"


def easy_synthderm_dir() -> Path:
    """Like default_synthderm_dir, for `synthderm-easy`."""
    e = EASY_SYNTHDERM
    return cache_dir() / "synthderm" / f"easy-{_generator_hash()}-seed{e['seed']}-n{e['n_lesions']}-{e['size']}px"


def _ensure_generated(root: Path, **options) -> Path:
    from .synthderm import generate

    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):  # two processes starting at once generate it once
        if not (root / "HAM10000_metadata.csv").exists():
            generate(root, **options)
    return root


def ensure_default_synthderm() -> Path:
    return _ensure_generated(default_synthderm_dir(), seed=DEFAULT_SYNTHDERM_SEED)


def ensure_easy_synthderm() -> Path:
    return _ensure_generated(easy_synthderm_dir(), **EASY_SYNTHDERM)


def ensure_synthderm_variant(name: str, **options) -> Path:
    """A synthderm generated with `options` (synthderm.generate's arguments), once, into the cache;
    keyed by the generator's source and the options, like the built-in datasets."""
    import json

    key = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return _ensure_generated(cache_dir() / "synthderm" / f"{name}-{_generator_hash()}-{key}", **options)


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """Split 'kind:PATH'; only the built-in synthderm and synthderm-easy may omit the path."""
    kind, _, path = spec.partition(":")
    if kind not in DATASET_KINDS:
        raise BenchboxError(
            f"unknown dataset {spec!r}: use synthderm, synthderm-easy, synthderm:DIR, ham10000:DIR, isic2018:DIR "
            "or csv:FILE."
        )
    if not path and kind not in BUILT_IN:
        raise BenchboxError(f"dataset {spec!r} needs a path: {kind}:PATH")
    if path and not Path(path).exists():
        raise BenchboxError(f"dataset {spec!r}: {path} does not exist.")
    return kind, Path(path) if path else None


def load_dataset(
    spec: str, only_present: bool = False, on_bad_image: str = "fail", progress: bool = True,
    ita_correction: str = DEFAULT_CORRECTION,
) -> Dataset:
    """Load a dataset by spec (see the module docstring), checked, hashed and with skin tones
    measured after `ita_correction` (benchbox.data.ita)."""
    kind, path = parse_spec(spec)
    if ita_correction not in CORRECTIONS:
        raise BenchboxError(f"--ita-correction must be one of {', '.join(CORRECTIONS)}, not {ita_correction!r}")
    options = dict(only_present=only_present, on_bad_image=on_bad_image, progress=progress, ita_correction=ita_correction)
    if kind in ("synthderm", "synthderm-easy", "ham10000"):
        from .ham10000 import load_ham10000

        if path is not None:
            return load_ham10000(path, name=kind, **options)
        if kind == "synthderm-easy":
            return load_ham10000(ensure_easy_synthderm(), name=kind, **options)
        from ..splits import SYNTHDERM_FRACTIONS

        dataset = load_ham10000(ensure_default_synthderm(), name=kind, **options)
        dataset.split_fractions = SYNTHDERM_FRACTIONS  # the default board's larger test part
        return dataset
    if kind == "isic2018":
        from .isic2018 import load_isic2018

        return load_isic2018(path, **options)
    from .csv_table import load_csv

    return load_csv(path, **options)
