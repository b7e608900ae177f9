"""Add a scored outside model to a run folder (a new one, or an earlier `benchbox run`'s) and bring
the folder's run-level files up to date: the entry's method-level metrics.json, the pairwise
comparisons over every finished entry, and the report."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from ..errors import BenchboxError
from ..runner.pooling import FinishedEntry
from ..runner.store import DONE_FILE, RunLock, read_json, read_record, write_job_folder, write_json
from .entry import SEED, file_digest, score_predictions
from .predictions_file import read_predictions_file

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def finished_entries(run_dir: Path, record: dict) -> list[FinishedEntry]:
    """Every (method, seed) of run.json whose folder holds a finished, sealed job."""
    entries = []
    for name, job in record.get("jobs", {}).items():
        method, _, seed = name.rpartition("/seed")
        done = read_record(run_dir / method / f"seed{seed}" / DONE_FILE)
        if job.get("status") == "done" and done is not None and "job_key" in done:
            entries.append(FinishedEntry(method, int(seed), done["job_key"]))
    return entries


def _entry_name(name: str | None, predictions: Path, hosted: set[str]) -> str:
    name = name or predictions.stem
    if not NAME.fullmatch(name):
        raise BenchboxError(f"--name {name!r}: use letters, digits and _ . + - (it names a folder and a board row).")
    if name in hosted:
        raise BenchboxError(f"--name {name!r} is a method this run folder trained; give the outside model its own "
                            f"name, e.g. --name {name}-external.")
    return name


def _new_record(run_dir: Path, data: str, dataset, split_path: Path, loaded) -> dict:
    from ..paths import portable_path
    from ..runner.provenance import code_version, library_versions

    code = code_version()
    return {
        "run_id": run_dir.name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {"methods": [], "data": data, "split": str(split_path), "profile": "score", "seeds": [SEED]},
        "code_version": code, "benchbox_version": code["benchbox"], "libraries": library_versions(),
        "dataset": {"name": dataset.name, "spec": data, "hash": dataset.hash, "n_images": len(dataset.manifest),
                    "notes": dataset.notes},
        "split": {"path": portable_path(split_path, run_dir), "hash": loaded.sha256, "n_dropped": loaded.n_dropped,
                  "counts": loaded.table["split"].value_counts().to_dict()},
        "evaluation": {"max_eval_images": None},
        "jobs": {},
    }


def _resolve_split(record: dict | None, run_dir: Path, split: str | None, dataset):
    """(split path, loaded split): the --out run's split, else --split, else the dataset's fixed split."""
    from ..runner.run import _default_split
    from ..splits.manifest import load_split

    if record:
        from ..paths import recorded_path

        path = Path(split) if split else recorded_path(record["split"]["path"], run_dir)
    else:
        path = Path(split) if split else _default_split(dataset)
    loaded = load_split(path, dataset.manifest, dataset.hash)
    if record and loaded.sha256 != record["split"]["hash"]:
        raise BenchboxError(f"split {path} (sha256 {loaded.sha256[:12]}…) is not the split of {run_dir} "
                            f"(sha256 {record['split']['hash'][:12]}…); score into a run folder of this split, "
                            "or leave --out out.")
    return path, loaded


def add_entry(predictions: str, data: str, split: str | None = None, name: str | None = None,
              out: str | None = None, val: str | None = None, allow_subset: bool = False,
              progress: bool = True) -> Path:
    """Score `predictions` and add it to the run folder; returns the run folder."""
    from ..data.load import load_dataset
    from ..runner.run import cap_evaluation_images

    predictions_path = Path(predictions)
    file = read_predictions_file(predictions_path)  # a bad file is refused before anything is read or written
    val_file = read_predictions_file(val) if val else None
    dataset = load_dataset(data, progress=progress)
    run_dir = Path(out) if out else None
    record = read_json(run_dir / "run.json") if run_dir and (run_dir / "run.json").is_file() else None
    if record and record.get("dataset", {}).get("hash") != dataset.hash:
        raise BenchboxError(f"--data {data!r} (sha256 {dataset.hash[:12]}…) is not the dataset of {run_dir} "
                            f"({record.get('dataset', {}).get('spec')!r}); score with that run's --data.")
    split_path, loaded = _resolve_split(record, run_dir, split, dataset)
    hosted = set((record or {}).get("config", {}).get("methods", []))
    name = _entry_name(name, predictions_path, hosted)
    if run_dir is None:
        run_dir = Path("reports") / f"{dataset.name}-score-{name}"
    # The images the run's hosted methods were scored on: the smoke profile caps val and test.
    cap = ((record or {}).get("evaluation") or {}).get("max_eval_images")
    table = cap_evaluation_images(loaded.table, cap)
    where = f"split {split_path} (sha256 {loaded.sha256[:12]}…)"
    scored = score_predictions(name, file, table, dataset.manifest, where, val_file, allow_subset)

    with RunLock(run_dir):
        record = read_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else \
            _new_record(run_dir, data, dataset, split_path, loaded)
        key = file_digest(file.path) + (file_digest(val_file.path) if val_file else "")
        files = {"predictions.csv": scored.frame, "metrics.json": scored.metrics}
        if scored.task == "multiclass":
            from ..runner.job import isic_submission

            files["isic_submission.csv"] = isic_submission(scored.frame)
        job_dir = run_dir / name / f"seed{SEED}"
        job_dir.mkdir(parents=True, exist_ok=True)
        write_json(job_dir / "job.json", {"job_key": key, "method": name, "seed": SEED, "scored": True})
        write_job_folder(job_dir, files, {"job_key": key, "scored_from": scored.metrics["scored_from"]})
        record.setdefault("scored", {})[name] = {**scored.metrics["scored_from"], "task": scored.task,
                                                 "subset": scored.subset}
        record.setdefault("jobs", {})[f"{name}/seed{SEED}"] = {"status": "done", "error": None, "scored": True}
        write_json(run_dir / "run.json", record)
        refresh_run_files(run_dir, record, dataset.manifest, progress)
    print(f"scored {name} from {file.path}: {len(scored.frame[scored.frame['split'] == 'test'])} test images"
          + (f" (subset of {scored.subset['test_images']})" if scored.subset else ""))
    print(f"run folder: {run_dir}")
    return run_dir


def refresh_run_files(run_dir: Path, record: dict, manifest, progress: bool) -> None:
    """Pool the scored entries, recompare every finished entry, seal and render, as a run's end does."""
    from ..reports.render import render_report
    from ..runner.pooling import pool_method
    from ..runner.run import _sealed_run_files, compare_methods

    entries = finished_entries(run_dir, record)
    tasks = {e.method: read_json(run_dir / e.method / f"seed{e.seed}" / "metrics.json")["task"] for e in entries}
    for name, info in record.get("scored", {}).items():
        if name in tasks:
            pool_method(run_dir, name, tasks[name], [SEED], manifest)
    subsets = {name for name, info in record.get("scored", {}).items() if info.get("subset")}
    compared = [e for e in entries if e.method not in subsets]  # paired tests need the same test images
    write_json(run_dir / "comparisons.json", compare_methods(run_dir, compared, tasks, manifest))
    record["files"] = _sealed_run_files(run_dir, list(tasks))
    write_json(run_dir / "run.json", record)
    render_report(run_dir, show_progress=progress)
