"""Read a run folder written by `benchbox run` into plain data, so reports and the gate never
parse JSON themselves. The format is documented in `reports/README.md`."""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import BenchboxError
from ..runner.store import DONE_FILE, DamagedFile, damaged_stage_files, file_sha256, read_predictions, read_record


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
    repair: str = ""  # what to run to repair the job's folder, for messages about damaged files

    def predictions(self) -> pd.DataFrame:
        """The job's per-image predictions (all splits), refused by name when missing or not probabilities."""
        try:
            return read_predictions(self.folder / "predictions.csv", self.task)
        except DamagedFile as damage:
            raise BenchboxError(f"{damage}. {self.repair}") from None

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
    repair: str = ""  # what to run to repair the folder, for messages about damaged files
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
                        f"but no method-level metrics. {self.repair or 'Re-run the same `benchbox run` command.'}")
                self._means[method] = dict(done[0].metrics) if done else {}
        return self._means[method]

    def pooled(self, method: str) -> dict[str, Any] | None:
        """`<method>/metrics.json` (seeds, interval, metrics parsed), or None when absent."""
        path = self.folder / method / "metrics.json"
        if not self.done_jobs(method) or not path.exists():
            return None
        data = _read_json(path, self.repair)
        return {**data, "metrics": {name: parse_metric(name, entry, path)
                                    for name, entry in data.get("metrics", {}).items()}}

    def n_seeds(self) -> int:
        """The most finished seeds of any method (1 = training noise is in no interval)."""
        return max((len(self.done_jobs(m)) for m in self.methods), default=0)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _read_json(path: Path, repair: str = "") -> Any:
    """A run-folder JSON file; BenchboxError naming it (and `repair`, what to run) when missing or damaged."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchboxError(f"{path} is missing; {repair or 'is this a complete run folder?'}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BenchboxError(f"{path} is not valid JSON ({error}); {repair or 're-run the job.'}") from None


# `benchbox run` flags of RunConfig fields, with the value that needs no flag.
RUN_FLAGS = (("split", "--split", None), ("device", "--device", "auto"), ("explain_n", "--explain-n", None),
             ("faithfulness", "--faithfulness", "fast"), ("weights_dir", "--weights-dir", None),
             ("on_bad_image", "--on-bad-image", "fail"), ("ita_correction", "--ita-correction", "source"))


def rerun_command(config: Mapping[str, Any] | None, run_folder: str | Path) -> str:
    """The `benchbox run` command line that runs a recorded configuration (run.json's `config`) into
    `run_folder` again: finished, intact jobs are skipped, missing or damaged stages recomputed."""
    out = shlex.quote(str(run_folder))
    if not config:
        return f"the `benchbox run` command that wrote this folder, with --out {out}"
    words = ["benchbox", "run"]
    if config.get("methods"):
        words += ["--methods", ",".join(config["methods"])]
    for key, flag in (("data", "--data"), ("profile", "--profile")):
        if config.get(key) is not None:
            words += [flag, str(config[key])]
    if config.get("seeds"):
        words += ["--seeds", ",".join(map(str, config["seeds"]))]
    for key, flag, default in RUN_FLAGS:
        if config.get(key, default) != default:
            words += [flag, str(config[key])]
    if config.get("pretrained") is not None:
        words.append("--pretrained" if config["pretrained"] else "--no-pretrained")
    for key, flag in (("only_present", "--only-present"), ("allow_leaky_split", "--allow-leaky-split")):
        if config.get(key):
            words.append(flag)
    return "`" + shlex.join(words) + f" --out {out}`"


def repair_advice(info: Mapping[str, Any], run_folder: Path) -> str:
    return (f"Repair it by re-running the run into its folder (damaged stages and what depends on them are "
            f"recomputed, the rest reused): {rerun_command(info.get('config'), run_folder)}")


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


def _read_job(run_folder: Path, key: str, record: dict[str, Any], repair: str) -> Job:
    method, _, seed_part = key.rpartition("/")
    if not method or not seed_part.startswith("seed") or not seed_part[4:].isdigit():
        raise BenchboxError(f"{run_folder / 'run.json'}: job key {key!r} is not '<method>/seed<k>'.")
    folder = run_folder / method / seed_part
    job = Job(method=method, seed=int(seed_part[4:]), status=record.get("status", "failed"),
              error=record.get("error"), folder=folder, repair=repair)
    if job.status != "done":
        if not job.error and (folder / "error.txt").exists():
            job.error = (folder / "error.txt").read_text()
        return job
    path = folder / "metrics.json"
    data = _read_json(path, repair)
    job.task = data.get("task")
    job.metrics = {name: parse_metric(name, entry, path)
                   for name, entry in data.get("metrics", {}).items()}
    if data.get("confusion_matrix") is not None:
        job.confusion_matrix = np.asarray(data["confusion_matrix"], dtype=np.int64)
    job.classes = list(data.get("classes", []))
    job.threshold = data.get("threshold")
    if (folder / "efficiency.json").exists():
        job.efficiency = _read_json(folder / "efficiency.json", repair)
    return job


def damaged_files(folder: Path, info: Mapping[str, Any]) -> list[str]:
    """'file what is wrong' for every file that the run sealed (each finished job's stage files in its
    done.json, the run-level files in run.json's `files`) and that is missing or changed since."""
    problems = []
    for key, record in info.get("jobs", {}).items():
        job_dir = folder / key
        if record.get("status") != "done" or not (job_dir / DONE_FILE).exists():
            continue  # a folder written without a seal (by hand, by an older benchbox) is checked as it is read
        done = read_record(job_dir / DONE_FILE)
        if done is None:
            problems.append(f"{job_dir / DONE_FILE} is damaged (not a JSON object)")
            continue
        problems += [f"{job_dir / name} {problem}" for name, problem in damaged_stage_files(job_dir, done).items()]
    for name, digest in (info.get("files") or {}).items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif file_sha256(path) != digest:
            problems.append(f"{path} is damaged (its sha256 is not the one run.json recorded)")
    return problems


def read_run(run_dir: str | Path) -> Run:
    """Load run.json, every finished job's metrics.json and comparisons.json (if present); a run folder
    whose sealed files are missing or changed is refused, naming them and the command that repairs it."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise BenchboxError(f"{folder} is not a folder; pass a run folder written by `benchbox run`.")
    info = _read_json(folder / "run.json")
    if not isinstance(info, dict):
        raise BenchboxError(f"{folder / 'run.json'} is not a JSON object; pass a run folder written by `benchbox run`.")
    repair = repair_advice(info, folder)
    problems = damaged_files(folder, info)
    if problems:
        listed = "\n".join(f"  {line}" for line in problems)
        raise BenchboxError(f"run folder {folder} is damaged:\n{listed}\n{repair}")
    jobs = [_read_job(folder, key, record, repair) for key, record in info.get("jobs", {}).items()]
    if not jobs:
        raise BenchboxError(f"{folder / 'run.json'} lists no jobs; nothing to report.")
    comparisons_path = folder / "comparisons.json"
    comparisons = _read_json(comparisons_path, repair) if comparisons_path.exists() else []
    return Run(folder=folder, info=info, jobs=jobs, comparisons=comparisons, repair=repair)


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
