"""Atomic writes and the run-folder lock: a killed run never leaves a half-written file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from ..errors import BenchboxError
from ..paths import atomic_write


def _plain(value):
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data) -> None:
    text = json.dumps(_plain(data), indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n"))


def write_npz(path: Path, **arrays) -> None:
    def write(tmp):
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    atomic_write(path, write)


class RunLock:
    """Exclusive lock on a run folder, so two runs never write one folder."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.lock = FileLock(str(self.path), timeout=0)

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.lock.acquire()
        except Timeout:
            raise BenchboxError(
                f"another benchbox run is writing {self.path.parent} (lock {self.path}); "
                "wait for it to finish or choose another --out."
            ) from None
        return self

    def __exit__(self, *exc):
        self.lock.release()
