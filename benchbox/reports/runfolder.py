"""Read a run folder written by `benchbox run` into plain data, so reports and the gate never
parse JSON themselves. The format is documented in `reports/README.md`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import BenchboxError


@dataclass(frozen=True)
class Metric:
    """One metric of one method: point estimate, 95% CI, sample size, direction."""

    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    n: int | None = None
    higher_is_better: bool | None = None
    ci_method: str | None = None
    reason: str | None = None  # why the value is NaN, when it is
    per_seed: tuple[float, ...] = ()  # the training seeds' own values (method-level metrics)
    group: str | None = None  # the subgroup a worst-gap metric belongs to

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.ci_low) and math.isfinite(self.ci_high)


@dataclass
class Job:
    """One (method, seed) job of a run; `metrics` is empty when the job failed."""

    method: str
    seed: int
    status: str  # "done" | "failed"
    error: str | None
    folder: Path
    task: str | None = None  # "multiclass" | "binary"
    metrics: dict[str, Metric] = field(default_factory=dict)
    confusion_matrix: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)
    threshold: float | None = None  # the binary operating point chosen on validation
    efficiency: dict[str, Any] = field(default_factory=dict)

    def predictions(self) -> pd.DataFrame:
        """The job's per-image predictions (all splits)."""
        return pd.read_csv(self.folder / "predictions.csv")

    @property
    def explanations_path(self) -> Path:
        return self.folder / "explanations.npz"


@dataclass
class Run:
    """A whole run: run.json as `info`, its jobs, and the run-level method comparisons."""

    folder: Path
    info: dict[str, Any]
    jobs: list[Job]
    comparisons: list[dict[str, Any]]
    _means: dict[str, dict[str, Metric]] = field(default_factory=dict, repr=False)

    @property
    def methods(self) -> list[str]:
        """Every method of the run, in run.json order, failed ones included."""
        return list(dict.fromkeys(job.method for job in self.jobs))

    @property
    def seeds(self) -> list[int]:
        return sorted({job.seed for job in self.jobs})

    def done_jobs(self, method: str) -> list[Job]:
        return sorted((j for j in self.jobs if j.method == method and j.status == "done"),
                      key=lambda j: j.seed)

    def failed_jobs(self) -> list[Job]:
        return [job for job in self.jobs if job.status != "done"]

    def task(self, method: str) -> str | None:
        done = self.done_jobs(method)
        return done[0].task if done else None

    def method_metrics(self, method: str) -> dict[str, Metric]:
        """A method's metrics over its finished seeds: `<method>/metrics.json`, where values are
        means over seeds and intervals include the seeds' spread (one seed: that seed's metrics)."""
        if method not in self._means:
            pooled = self.pooled(method)
            if pooled is not None:
                self._means[method] = pooled["metrics"]
            else:
                done = self.done_jobs(method)
                if len(done) > 1:
                    raise BenchboxError(
                        f"{self.folder / method / 'metrics.json'} is missing: {method} has {len(done)} finished seeds "
                        "but no method-level metrics; re-run the same `benchbox run` command to write them.")
                self._means[method] = dict(done[0].metrics) if done else {}
        return self._means[method]

    def pooled(self, method: str) -> dict[str, Any] | None:
        """`<method>/metrics.json` (seeds, interval, metrics parsed), or None when absent."""
        path = self.folder / method / "metrics.json"
        if not self.done_jobs(method) or not path.exists():
            return None
        data = _read_json(path)
        return {**data, "metrics": {name: parse_metric(name, entry, path)
                                    for name, entry in data.get("metrics", {}).items()}}

    def n_seeds(self) -> int:
        """The most finished seeds of any method (1 = training noise is in no interval)."""
        return max((len(self.done_jobs(m)) for m in self.methods), default=0)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchboxError(f"{path} is missing; is this a complete run folder?") from None
    except json.JSONDecodeError as error:
        raise BenchboxError(f"{path} is not valid JSON ({error}); re-run the job.") from None


def parse_metric(name: str, entry: dict[str, Any], source: Path) -> Metric:
    if "value" not in entry:
        raise BenchboxError(f"{source}: metric {name!r} has no 'value'.")
    return Metric(
        value=_number(entry["value"]),
        ci_low=_number(entry.get("ci_low")),
        ci_high=_number(entry.get("ci_high")),
        n=None if entry.get("n") is None else int(entry["n"]),
        higher_is_better=entry.get("higher_is_better"),
        ci_method=entry.get("ci_method"),
        reason=entry.get("reason"),
        per_seed=tuple(_number(v) for v in entry.get("per_seed") or ()),
        group=entry.get("group"),
    )


def _read_job(run_folder: Path, key: str, record: dict[str, Any]) -> Job:
    method, _, seed_part = key.rpartition("/")
    if not method or not seed_part.startswith("seed"):
        raise BenchboxError(f"{run_folder / 'run.json'}: job key {key!r} is not '<method>/seed<k>'.")
    folder = run_folder / method / seed_part
    job = Job(method=method, seed=int(seed_part[4:]), status=record.get("status", "failed"),
              error=record.get("error"), folder=folder)
    if job.status != "done":
        if not job.error and (folder / "error.txt").exists():
            job.error = (folder / "error.txt").read_text()
        return job
    path = folder / "metrics.json"
    data = _read_json(path)
    job.task = data.get("task")
    job.metrics = {name: parse_metric(name, entry, path)
                   for name, entry in data.get("metrics", {}).items()}
    if data.get("confusion_matrix") is not None:
        job.confusion_matrix = np.asarray(data["confusion_matrix"], dtype=np.int64)
    job.classes = list(data.get("classes", []))
    job.threshold = data.get("threshold")
    if (folder / "efficiency.json").exists():
        job.efficiency = _read_json(folder / "efficiency.json")
    return job


def read_run(run_dir: str | Path) -> Run:
    """Load run.json, every finished job's metrics.json and comparisons.json (if present)."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise BenchboxError(f"{folder} is not a folder; pass a run folder written by `benchbox run`.")
    info = _read_json(folder / "run.json")
    jobs = [_read_job(folder, key, record) for key, record in info.get("jobs", {}).items()]
    if not jobs:
        raise BenchboxError(f"{folder / 'run.json'} lists no jobs; nothing to report.")
    comparisons_path = folder / "comparisons.json"
    comparisons = _read_json(comparisons_path) if comparisons_path.exists() else []
    return Run(folder=folder, info=info, jobs=jobs, comparisons=comparisons)


def intervals_missing_their_estimate(run_dir: str | Path) -> list[str]:
    """Every `file: metric` of a run folder (each seed's and each method's metrics.json, subgroups
    included) whose interval does not contain its value; empty for a sound run."""
    problems = []
    for path in sorted(Path(run_dir).glob("*/**/metrics.json")):
        for name, entry in _read_json(path).get("metrics", {}).items():
            value, low, high = (_number(entry.get(k)) for k in ("value", "ci_low", "ci_high"))
            if math.isfinite(low) and math.isfinite(high) and not low <= value <= high:
                problems.append(f"{path.relative_to(run_dir)}: {name} = {value!r} outside [{low!r}, {high!r}]")
    return problems
