"""Method-level results over training seeds: `<method>/metrics.json` beside the seed folders.

Why: a board should show what a method does, not what one training run of it did. Every seed's
test predictions are rescored together (metrics/seeds.py), so each interval includes the
spread between seeds; explanation, segmentation and efficiency scores, which have no replicate
rows, are pooled from each seed's entry. With one seed the file holds that seed's metrics and
says that training noise is not included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics.seeds import ONE_SEED_NOTE, SEED_AWARE
from .job import JobSpec, probabilities, unscored_ids
from .store import DONE_FILE, read_json, read_record, write_json

INTERVAL_SEED_AWARE = (
    f"{SEED_AWARE}: mean over seeds; lesion bootstrap of the seed mean widened by the seeds' spread "
    "(Student t, Welch-Satterthwaite dof); see metrics/README.md"
)


def finished_seeds(run_dir: Path, jobs: list[JobSpec], method: str) -> list[int]:
    """Seeds of `method` whose job folder holds a finished job with this run's job key (a damaged
    done.json is no finished job: the runner recomputes that job before pooling)."""
    seeds = []
    for job in jobs:
        if job.method != method:
            continue
        done = read_record(run_dir / job.method / f"seed{job.seed}" / DONE_FILE)
        if done is not None and done.get("job_key") == job.job_key():
            seeds.append(job.seed)
    return sorted(seeds)


class FinishedEntry:
    """A finished (method, seed) folder that no JobSpec describes (an outside model `benchbox score`
    added), in the shape pooling and comparisons read: method, seed, job_key()."""

    def __init__(self, method: str, seed: int, key: str):
        self.method, self.seed, self._key = method, seed, key

    def job_key(self) -> str:
        return self._key


def scored_entries(run_dir: Path, record: dict) -> list[FinishedEntry]:
    """The outside models of run.json's `scored` whose folder holds a sealed, finished entry."""
    entries = []
    for name in record.get("scored", {}):
        done = read_record(run_dir / name / "seed0" / DONE_FILE)
        if done is not None and "job_key" in done:
            entries.append(FinishedEntry(name, 0, done["job_key"]))
    return entries


def test_predictions(folder: Path, left_out: frozenset[str] = frozenset()) -> pd.DataFrame:
    """A job's scored test rows by image id: without the images official scoring leaves out (job.unscored_ids)."""
    frame = pd.read_csv(folder / "predictions.csv", dtype={"image_id": str, "lesion_id": str})
    frame = frame[(frame["split"] == "test") & ~frame["image_id"].isin(left_out)]
    return frame.sort_values("image_id").reset_index(drop=True)


def pool_method(run_dir: Path, method: str, task: str, seeds: list[int], manifest: pd.DataFrame) -> dict:
    """Score every seed of one method together and write `<method>/metrics.json`; returns its content."""
    from ..metrics.config import load_config
    from ..metrics.seeds import pool_entries
    from ..metrics.subgroups import adjustment_strata, subgroup_attributes
    from ..metrics.suite import evaluate_seeds

    config = load_config()
    folders = [run_dir / method / f"seed{seed}" for seed in seeds]
    per_seed = [read_json(folder / "metrics.json") for folder in folders]
    frames = [test_predictions(folder, unscored_ids(manifest)) for folder in folders]
    reference = frames[0]
    for seed, frame in zip(seeds, frames):
        if not frame["image_id"].equals(reference["image_id"]):
            raise ValueError(f"{method}: seed {seed} was scored on other test images than seed {seeds[0]}")
    y_true, _ = probabilities(reference, task)
    probas = [probabilities(frame, task)[1] for frame in frames]
    rows = manifest.set_index("image_id").loc[reference["image_id"]]
    attributes = subgroup_attributes(rows, config.subgroup_attributes, config.age_band_edges, config.ita_light_dark_cut)
    metrics = evaluate_seeds(task, y_true, probas, reference["lesion_id"].to_numpy(), attributes,
                             [m.get("threshold") for m in per_seed], config, method=method,
                             strata=adjustment_strata(rows, config))
    others = [{k: v for k, v in m["metrics"].items() if k not in metrics} for m in per_seed]
    for name, entry in pool_entries(others, config.bootstrap.alpha).items():
        metrics[name] = {**entry, "n_seeds": len(seeds)}
    record = {
        "method": method, "task": task, "seeds": seeds, "n_seeds": len(seeds),
        "interval": INTERVAL_SEED_AWARE if len(seeds) > 1 else ONE_SEED_NOTE,
        "classes": per_seed[0].get("classes"), "thresholds": [m.get("threshold") for m in per_seed],
        "metrics": metrics,
    }
    if all("confusion_matrix" in m for m in per_seed):
        record["confusion_matrix"] = np.sum([m["confusion_matrix"] for m in per_seed], axis=0).tolist()
    write_json(run_dir / method / "metrics.json", record)
    return record
