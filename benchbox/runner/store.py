"""The run folder on disk: atomic writes, the run-folder lock, and the sha256 seal of a finished job.

A finished job's `done.json` records the sha256 of each of its stage files, so a re-run and
`benchbox report` can tell a sound folder from one whose files were deleted, truncated or edited
since (a re-run recomputes those stages; the report names them and the command that repairs them).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from ..errors import BenchboxError
from ..labels import BINARY_CLASSES, CLASSES, MALIGNANT_CLASSES
from ..paths import atomic_write

DONE_FILE = "done.json"
# What a finished job leaves, in the order the stages write them; each present one is sealed in done.json.
STAGE_FILES = ("predictions.csv", "isic_submission.csv", "efficiency.json", "explanations.npz", "xai.json",
               "metrics.json")
SHOWN = 3  # lines quoted in a message about a damaged file


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


CARDS_FOLDER = "cards"  # <run>/cards/<method>.yaml: the resolved card of each method the run ran


def write_card_copies(run_dir: Path, cards: Mapping) -> None:
    """Keep the card each method ran with, so the run's claims tables never follow a later edit."""
    import yaml

    for name, card in cards.items():
        kept = card.resolved()
        if kept["source"].endswith((".yaml", ".yml")):  # the card file's name, not this machine's path to it
            kept["source"] = Path(kept["source"]).name
        text = yaml.safe_dump(_plain(kept), sort_keys=False, allow_unicode=True, width=100)
        atomic_write(Path(run_dir) / CARDS_FOLDER / f"{name}.yaml", lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n"))


def write_npz(path: Path, **arrays) -> None:
    def write(tmp):
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    atomic_write(path, write)


class DamagedFile(Exception):
    """A run-folder file that cannot be used as it is: missing, unreadable, or wrong inside."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path} {problem}")
        self.path = Path(path)
        self.problem = problem


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_record(path: Path) -> dict | None:
    """A bookkeeping JSON object (done.json, job.json), or None when it is missing or damaged."""
    try:
        data = read_json(path)
    except (OSError, ValueError):  # missing, unreadable, not JSON (JSONDecodeError is a ValueError)
        return None
    return data if isinstance(data, dict) else None


def read_stage_json(path: Path, required: tuple[str, ...] = ()) -> dict:
    """A stage's JSON object; DamagedFile when it is missing, not JSON, or lacks a required key."""
    if not path.exists():
        raise DamagedFile(path, "is missing")
    try:
        data = read_json(path)
    except (OSError, ValueError) as error:
        raise DamagedFile(path, f"is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise DamagedFile(path, f"holds a JSON {type(data).__name__}, not an object")
    missing = [key for key in required if key not in data]
    if missing:
        raise DamagedFile(path, f"has no {', '.join(map(repr, missing))}")
    return data


def seal_job(job_dir: Path, record: Mapping) -> dict:
    """Write `done.json`: `record` (it must hold "job_key") plus the sha256 of every stage file present."""
    job_dir = Path(job_dir)
    files = {name: file_sha256(job_dir / name) for name in STAGE_FILES if (job_dir / name).exists()}
    done = {**record, "files": files}
    write_json(job_dir / DONE_FILE, done)
    return done


def damaged_stage_files(job_dir: Path, done: Mapping) -> dict[str, str]:
    """{file name: what is wrong} for each stage file sealed in `done` that is missing or changed since."""
    problems = {}
    for name, digest in (done.get("files") or {}).items():
        path = Path(job_dir) / name
        if not path.is_file():
            problems[name] = "is missing"
        elif file_sha256(path) != digest:
            problems[name] = f"is damaged (its sha256 is not the one {DONE_FILE} recorded when the job finished)"
    return problems


def write_job_folder(job_dir: Path, files: Mapping[str, object], record: Mapping) -> dict:
    """Write a finished job's stage files and seal them in done.json; returns done.json's content.

    The way an entry made outside `benchbox run` (an outside model scored by `benchbox score`)
    joins a run folder so that re-runs and reports verify it like any job. `files` maps stage file
    names (STAGE_FILES) to content: a DataFrame for .csv, a dict for .json, a dict of arrays for
    .npz. Stage files of an earlier entry that `files` does not name are removed; `record` must
    hold the entry's "job_key" (and may hold anything else done.json should keep)."""
    job_dir = Path(job_dir)
    unknown = sorted(set(files) - set(STAGE_FILES))
    if unknown:
        raise ValueError(f"not stage files: {unknown}; a job folder holds {list(STAGE_FILES)}")
    if "job_key" not in record:
        raise ValueError("record needs a 'job_key' (what identifies the entry)")
    (job_dir / DONE_FILE).unlink(missing_ok=True)  # until sealed again, the folder is not finished
    for name in STAGE_FILES:
        path = job_dir / name
        if name not in files:
            path.unlink(missing_ok=True)
        elif name.endswith(".csv"):
            write_csv(path, files[name])
        elif name.endswith(".json"):
            write_json(path, files[name])
        else:
            write_npz(path, **files[name])
    return seal_job(job_dir, record)


def probability_columns(task: str) -> list[str]:
    return [f"p_{c}" for c in (CLASSES if task == "multiclass" else BINARY_CLASSES)]


def _lines(frame: pd.DataFrame, bad: np.ndarray) -> str:
    """'line 7 (image ISIC_0000001), ...': CSV line numbers (the header is line 1) of the bad rows."""
    rows = np.flatnonzero(bad)
    ids = frame["image_id"].astype(str).to_numpy() if "image_id" in frame else None
    shown = ", ".join(f"line {i + 2}" + (f" (image {ids[i]})" if ids is not None else "") for i in rows[:SHOWN])
    more = f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
    return shown + more


def predictions_problem(frame: pd.DataFrame, task: str | None) -> str | None:
    """What makes a predictions.csv unusable (a missing column, an unknown label, NaN, a probability
    row that is not a distribution), naming lines and columns; None when it is sound."""
    from ..metrics.validation import ROW_SUM_TOLERANCE

    if task is None:
        task = "multiclass" if set(probability_columns("multiclass")) <= set(frame.columns) else "binary"
    columns = probability_columns(task)
    needed = ["image_id", "lesion_id", "split", "y_true", *columns, "p_malignant"]
    missing = [c for c in dict.fromkeys(needed) if c not in frame.columns]
    if missing:
        return f"has no column(s) {missing} (a {task} job's predictions.csv has {list(dict.fromkeys(needed))})"
    labels = frame["y_true"].astype(str)
    bad = ~labels.isin([*CLASSES, *BINARY_CLASSES]).to_numpy()
    if bad.any():
        return f"holds unknown class names in y_true at {_lines(frame, bad)}"
    checked = list(dict.fromkeys([*columns, "p_malignant"]))
    values = frame[checked].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    for j, column in enumerate(checked):
        bad = ~np.isfinite(values[:, j])
        if bad.any():
            return f"holds a missing, NaN or non-numeric {column} at {_lines(frame, bad)}"
    bad = ((values < 0) | (values > 1)).any(axis=1)
    if bad.any():
        return f"holds probabilities outside [0, 1] at {_lines(frame, bad)}"
    sums = values[:, : len(columns)].sum(axis=1)
    bad = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
    if bad.any():
        first = np.flatnonzero(bad)[:SHOWN]
        return (f"holds probability rows that do not sum to 1 (tolerance {ROW_SUM_TOLERANCE:g}) at "
                f"{_lines(frame, bad)}: sums {', '.join(f'{sums[i]:.6g}' for i in first)}")
    if task == "multiclass":
        malignant = values[:, [columns.index(f"p_{c}") for c in MALIGNANT_CLASSES]].sum(axis=1)
        bad = np.abs(malignant - values[:, -1]) > ROW_SUM_TOLERANCE
        if bad.any():
            return (f"holds a p_malignant that is not p_mel + p_bcc + p_akiec (tolerance {ROW_SUM_TOLERANCE:g}) "
                    f"at {_lines(frame, bad)}")
    return None


def read_predictions(path: Path, task: str | None = None, **read_options) -> pd.DataFrame:
    """predictions.csv as a frame; DamagedFile when it is missing, not CSV, or fails predictions_problem."""
    path = Path(path)
    if not path.is_file():
        raise DamagedFile(path, "is missing")
    try:
        frame = pd.read_csv(path, **read_options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        raise DamagedFile(path, f"cannot be read as CSV ({type(error).__name__}: {error})") from None
    problem = predictions_problem(frame, task)
    if problem:
        raise DamagedFile(path, problem)
    return frame


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
