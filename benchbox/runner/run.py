"""Run every (method, seed) job of a configuration into one run folder, then compare and report."""

from __future__ import annotations

import hashlib
import logging
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import BenchboxError
from ..labels import CLASSES, MALIGNANT_INDICES
from ..methods.base import PROFILES
from ..metrics.config import DEFAULT_SUITES
from ..paths import cache_dir, portable_path
from .config import EXECUTION, FAITHFULNESS, RunConfig
from .job import JobInputs, JobSpec, probabilities, run_job, unscored_ids
from .pooling import finished_seeds, pool_method, scored_entries, test_predictions
from .provenance import code_version, hardware, library_versions, source_hash
from .store import RunLock, file_sha256, read_json, write_card_copies, write_json

log = logging.getLogger("benchbox.run")


def _default_split(dataset) -> Path:
    """The dataset's fixed split: the shipped canonical one, else a lesion-grouped seed-0 split made
    once per dataset hash and kept in the cache."""
    from ..splits import DEFAULT_FRACTIONS
    from ..splits.build import make_split
    from ..splits.manifest import canonical_split_path, write_split

    canonical = canonical_split_path(dataset.name)
    if canonical is not None:
        return canonical
    scheme = "official" if "official_split" in dataset.manifest and dataset.manifest["official_split"].nunique() == 3 else "lesion"
    fractions = dataset.split_fractions or DEFAULT_FRACTIONS
    parts = "" if scheme == "official" or fractions == DEFAULT_FRACTIONS else "-" + "-".join(f"{round(100 * f)}" for f in fractions)
    path = cache_dir() / "splits" / f"{dataset.name}-{dataset.hash[:16]}-{scheme}{parts}-seed0.csv"
    if not path.exists():
        table, info = make_split(dataset.manifest, scheme=scheme, seed=0, fractions=fractions, folds=3)
        info["command"] = f"made by benchbox run for dataset hash {dataset.hash}"
        write_split(table, path, info, dataset.name, dataset.hash)
    return path


def cap_evaluation_images(table: pd.DataFrame, cap: int | None, seed: int = 0) -> pd.DataFrame:
    """At most about `cap` images each of val and test, taken as whole groups in a seeded order
    (the smoke profile); train is untouched and None keeps everything."""
    if cap is None:
        return table
    keep = table["split"] == "train"
    rng = np.random.default_rng(seed)
    for split in ("val", "test"):
        rows = table[table["split"] == split]
        sizes = rows.groupby("group_id").size()
        order = sizes.index.to_numpy()[rng.permutation(len(sizes))]
        chosen = order[: int(np.searchsorted(sizes.loc[order].cumsum().to_numpy(), cap)) + 1]
        keep |= (table["split"] == split) & table["group_id"].isin(chosen)
    return table[keep].reset_index(drop=True)


def validate(config: RunConfig, progress: bool = True) -> dict:
    """Check everything before any training: methods, profile, data, masks, split, device, weights."""
    from ..registry import method_cards

    out = config.run_dir()
    if out.exists() and not out.is_dir():
        raise BenchboxError(f"--out {out} is a file, not a folder; name a folder for the run (it is created if missing).")
    if config.profile not in PROFILES:
        raise BenchboxError(f"--profile must be one of {PROFILES}, not {config.profile!r}")
    if config.faithfulness not in FAITHFULNESS:
        raise BenchboxError(f"--faithfulness must be one of {FAITHFULNESS}, not {config.faithfulness!r}")
    if not config.seeds:
        raise BenchboxError("--seeds needs at least one seed, e.g. --seeds 0,1,2")
    if config.explain_n is not None and config.explain_n < 0:
        raise BenchboxError("--explain-n must be 0 or more")
    cards = method_cards()
    selected = {name: cards.get(name) for name in config.methods}
    for card in selected.values():
        card.settings(config.profile)
    from ..data.load import load_dataset

    dataset = load_dataset(config.data, only_present=config.only_present, on_bad_image=config.on_bad_image,
                           progress=progress, ita_correction=config.ita_correction)
    if not dataset.has_masks:
        needing = [name for name, card in selected.items() if card.needs_masks]
        if needing:
            raise BenchboxError(
                f"method(s) {needing} need lesion masks and dataset {config.data!r} has none; "
                "drop them with --methods, or use a dataset with masks."
            )
    from ..splits.manifest import dropped_images, load_split

    if config.allow_leaky_split and not config.split:
        raise BenchboxError("--allow-leaky-split needs --split LEAKY.csv: the fixed split of every dataset is leak-free.")
    split_path = Path(config.split) if config.split else _default_split(dataset)
    if config.allow_leaky_split:
        loaded, leak = load_leaky_split(split_path, dataset, config.only_present)
    else:
        loaded, leak = load_split(split_path, dataset.manifest, dataset.hash, dataset_restricted=config.only_present), None
    from ..training.runtime import resolve_device

    # a Ray job resolves the device on its node (the driver may have no GPU)
    device = resolve_device(config.device) if config.executor == "local" else config.device
    pretrained = _check_pretrained(config, selected)
    return {"cards": selected, "dataset": dataset, "split": loaded, "split_path": split_path, "leak": leak,
            "dropped_images": dropped_images(split_path),
            "device": device, "pretrained": pretrained}


def load_leaky_split(split_path: Path, dataset, restricted: bool):
    """The split checked like any other (hash, ids) but with crossing lesions accepted and counted:
    (LoadedSplit, {"lesions_crossing", "images_in_crossing_lesions", "note"}) for run.json's split."""
    from ..splits.grouping import lesion_ids_or_image_ids
    from ..splits.manifest import LoadedSplit, crossings, match_dataset, read_split

    table, digest = read_split(split_path)
    matched, n_dropped = match_dataset(table, dataset.manifest, split_path, dataset.hash, restricted)
    lesions = lesion_ids_or_image_ids(dataset.manifest)
    crossing = crossings(lesions, matched["split"])
    n_images = int(lesions.isin(crossing["key"]).sum())
    note = (f"LEAKY split, run with --allow-leaky-split to measure leakage: {len(crossing):,} lesion(s) "
            f"({n_images:,} images) have images in more than one of train/val/test, so these numbers are inflated"
            if len(crossing) else "run with --allow-leaky-split, but no lesion crosses train/val/test: the split is leak-free")
    return LoadedSplit(matched, digest, n_dropped), {"lesions_crossing": len(crossing),
                                                      "images_in_crossing_lesions": n_images, "note": note}


def _check_pretrained(config: RunConfig, cards: dict) -> dict[str, bool]:
    """Whether each method loads ImageNet weights; a method that cannot find them refuses now."""
    decided = {}
    for name, card in cards.items():
        ctx = card.context(config.profile, pretrained=config.pretrained, weights_dir=config.weights_dir)
        decided[name] = ctx.pretrained
        method = card.create()
        if ctx.pretrained and hasattr(method, "validate"):
            method.validate(ctx)
    return decided


def compare_methods(run_dir: Path, jobs: list[JobSpec], tasks: dict[str, str], manifest: pd.DataFrame) -> list[dict]:
    """Holm-corrected paired comparisons of every pair of finished methods on each board's primary
    metric, over all their finished seeds (seed-aware when a method has several), on the scored test images."""
    from ..metrics.config import load_config
    from ..metrics.paired import MethodOutput, compare_all_seeds

    config = load_config()
    outputs, reference = {}, None
    for method in dict.fromkeys(job.method for job in jobs):
        seeds = finished_seeds(run_dir, jobs, method)
        for seed in seeds:
            folder = run_dir / method / f"seed{seed}"
            frame = test_predictions(folder, unscored_ids(manifest))
            reference = frame if reference is None else reference
            threshold = read_json(folder / "metrics.json").get("threshold")
            _, proba = probabilities(frame, tasks[method])
            outputs.setdefault(method, []).append(MethodOutput(tasks[method], proba, threshold))
    if len(outputs) < 2:
        return []
    y_true = reference["y_true"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    clusters = reference["lesion_id"].to_numpy()
    results = []
    for board in config.boards.values():
        members = {name: out for name, out in outputs.items() if out[0].task in board.tasks}
        if len(members) < 2:
            continue
        # binary methods alone take 0/1 labels; beside a 7-class method compare_all converts them
        multiclass = any(out[0].task == "multiclass" for out in members.values())
        labels = y_true if multiclass else np.isin(y_true, MALIGNANT_INDICES).astype(np.int64)
        for row in compare_all_seeds(board.primary, labels, members, clusters, config):
            results.append({"board": board.name, "metric": board.primary, **row})
    return results


def confounding_of_test_images(manifest: pd.DataFrame, split_table: pd.DataFrame) -> dict:
    """How each subgroup attribute goes with image source and class on the scored test images
    (run.json "confounding"; metrics/confounding.py), so a report can tell a skin-tone gap from a
    device or case-mix gap."""
    from ..metrics.config import load_config
    from ..metrics.confounding import confounding_tables
    from ..metrics.subgroups import subgroup_attributes

    config = load_config()
    test = split_table.loc[split_table["split"] == "test", "image_id"]
    rows = manifest.set_index("image_id").loc[test[~test.isin(unscored_ids(manifest))]]
    attributes = subgroup_attributes(rows, config.subgroup_attributes, config.age_band_edges, config.ita_light_dark_cut)
    return confounding_tables(attributes, rows["source"].to_numpy(dtype=object), rows["dx"].to_numpy(dtype=object),
                              rows["malignant"].to_numpy())


def pool_seeds(run_dir: Path, jobs: list[JobSpec], tasks: dict[str, str], manifest: pd.DataFrame, record: dict) -> None:
    """Write each method's `<method>/metrics.json` over its finished seeds; a failure is recorded per method."""
    for method in dict.fromkeys(job.method for job in jobs):
        seeds = finished_seeds(run_dir, jobs, method)
        stale = run_dir / method / "metrics.json"
        if not seeds:
            stale.unlink(missing_ok=True)
            continue
        try:
            pool_method(run_dir, method, tasks[method], seeds, manifest)
        except Exception as error:  # a summary: record, keep the seeds' own results
            stale.unlink(missing_ok=True)
            log.error("pooling the seeds of %s failed: %s", method, error)
            record.setdefault("pooling_errors", {})[method] = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"


# Fields of RunConfig that may differ between runs into one folder: more methods or seeds add jobs,
# the folder and device do not change what is computed. data, split, explain_n and pretrained are
# compared by what they resolve to (dataset and split hashes, evaluation settings, each method's weights).
ADDABLE = ("methods", "seeds", "out", "device", *EXECUTION)
RESOLVED = ("data", "split", "explain_n", "pretrained")


def _short(digest: str) -> str:
    return f"{digest[:12]}…"


def configuration_differences(previous: dict, current: dict) -> list[str]:
    """What differs between the run recorded in a folder's run.json and this one ('what: there, now'),
    over what decides results; a key the earlier run.json lacks is not compared."""
    before, now = previous.get("config", {}), current["config"]
    differences = [f"{key}: {before[key]!r} in the folder, {now[key]!r} now" for key in now
                   if key not in ADDABLE + RESOLVED and key in before and before[key] != now[key]]
    for part, key in (("dataset", "data"), ("split", "split")):
        old, new = previous.get(part, {}).get("hash"), current[part]["hash"]
        if old is not None and old != new:
            differences.append(f"{key}: {before.get(key)!r} (sha256 {_short(old)}) in the folder, "
                               f"{now.get(key)!r} (sha256 {_short(new)}) now")
    old, new = previous.get("evaluation") or {}, current["evaluation"]
    if before.get("profile") == now.get("profile"):  # else they differ with the profile, which is named
        differences += [f"{key}: {old[key]!r} in the folder, {new[key]!r} now" for key in new
                        if key in old and old[key] != new[key]]
    old = previous.get("pretrained") or {}
    differences += [f"pretrained weights of {name}: {old[name]} in the folder, {flag} now"
                    for name, flag in current["pretrained"].items() if name in old and old[name] != flag]
    return differences


def _earlier_run(run_dir: Path) -> dict:
    """The run recorded in run_dir's run.json ({} when there is none); a run.json that cannot tell
    which configuration the folder holds is refused rather than overwritten."""
    path = run_dir / "run.json"
    if not path.exists():
        return {}
    advice = (f"If {run_dir} holds this same configuration, delete {path} and run again (its intact "
              "finished jobs are reused); otherwise choose another --out.")
    try:
        previous = read_json(path)
    except (OSError, ValueError) as error:
        raise BenchboxError(f"{path} is damaged ({error}), so benchbox cannot tell which configuration "
                            f"{run_dir} holds. {advice}") from None
    if not isinstance(previous, dict) or not isinstance(previous.get("config"), dict):
        raise BenchboxError(f"{path} records no configuration, so benchbox cannot tell what {run_dir} holds. {advice}")
    return previous


def refuse_another_configuration(run_dir: Path, previous: dict, current: dict) -> None:
    """One configuration per run folder: another one would replace or mix with the folder's results."""
    differences = configuration_differences(previous, current) if previous else []
    if not differences:
        return
    from ..reports.runfolder import rerun_command

    listed = "\n".join(f"  {line}" for line in differences)
    raise BenchboxError(
        f"{run_dir} holds a run of another configuration; this run would replace or mix with its results:\n"
        f"{listed}\nRun this configuration into another folder (another --out, or no --out for "
        f"reports/<run id>). To add methods or seeds to {run_dir}, keep its configuration: "
        f"{rerun_command(previous['config'], run_dir)} with your --methods or --seeds."
    )


def _sealed_run_files(run_dir: Path, methods: list[str]) -> dict[str, str]:
    """sha256 of the run-level files this run wrote (pooled metrics, comparisons), which the report verifies."""
    names = [f"{method}/metrics.json" for method in methods] + ["comparisons.json"]
    return {name: file_sha256(run_dir / name) for name in names if (run_dir / name).is_file()}


def execute(config: RunConfig, progress: bool = True) -> int:
    """Run a configuration; returns the exit code (1 when any job failed)."""
    started = time.perf_counter()
    if config.executor == "ray":
        from .ray_executor import preflight

        preflight(config.ray_address)  # before any data is loaded: Ray missing, no cluster at the address
    checked = validate(config, progress)
    dataset, loaded = checked["dataset"], checked["split"]
    evaluation = config.evaluation()
    suites_hash = metric_suites_sha256()
    split_table = cap_evaluation_images(loaded.table, evaluation["max_eval_images"])
    run_dir = config.run_dir()
    code = code_version()
    with RunLock(run_dir):
        previous = _earlier_run(run_dir)
        record = {
            "run_id": config.run_id(),
            "created": previous.get("created", datetime.now(timezone.utc).isoformat(timespec="seconds")),
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": asdict(config),
            "code_version": code,
            "benchbox_version": code["benchbox"],
            "libraries": library_versions(),
            "hardware": hardware(checked["device"]),
            "dataset": {"name": dataset.name, "spec": config.data, "hash": dataset.hash,
                        "n_images": len(dataset.manifest), "notes": dataset.notes},
            "split": {"path": portable_path(checked["split_path"], run_dir), "hash": loaded.sha256, "n_dropped": loaded.n_dropped,
                      **({"leak": checked["leak"]} if checked["leak"] else {}),
                      **({"dropped_images": checked["dropped_images"]} if checked["dropped_images"] else {}),
                      "counts": loaded.table["split"].value_counts().to_dict(),
                      "evaluated": split_table["split"].value_counts().to_dict()},
            "evaluation": evaluation,
            "pretrained": checked["pretrained"],
            "metric_suites_sha256": suites_hash,
            "confounding": confounding_of_test_images(dataset.manifest, split_table),
            # this invocation's jobs (finished ones are skipped and listed again), and the outside
            # models `benchbox score` added, which stay on the boards
            "jobs": {name: job for name, job in previous.get("jobs", {}).items() if job.get("scored")},
            "scored": previous.get("scored", {}),
            "timings": {},
        }
        refuse_another_configuration(run_dir, previous, record)
        with run_log(run_dir / "run.log"):
            report_path = _run_jobs(run_dir, record, config, checked, split_table, started, progress)
    return _summary(run_dir, record, report_path)


def metric_suites_sha256() -> str:
    """Part of every job's key: a changed suite rescores every job (and retrains none)."""
    return hashlib.sha256(DEFAULT_SUITES.read_bytes()).hexdigest()


def job_specs(config: RunConfig, checked: dict, evaluation: dict, suites_hash: str) -> list[JobSpec]:
    """One JobSpec per (method, seed) of a validated configuration (`validate`'s result)."""
    dataset, loaded = checked["dataset"], checked["split"]
    return [
        JobSpec(method=name, seed=seed, profile=config.profile, settings=card.settings(config.profile),
                input_size=card.input_size(config.profile), dataset_hash=dataset.hash,
                split_hash=loaded.sha256, code=source_hash(), pretrained=checked["pretrained"][name],
                options={**evaluation, "faithfulness": config.faithfulness,
                         "weights_dir": config.weights_dir, "metric_suites": suites_hash})
        for name, card in checked["cards"].items() for seed in config.seeds
    ]


def _run_jobs(run_dir: Path, record: dict, config: RunConfig, checked: dict, split_table: pd.DataFrame,
              started: float, progress: bool) -> Path | None:
    """Every job of the run, then pooling, comparisons and the report; keeps run.json current."""
    dataset = checked["dataset"]
    run_json = run_dir / "run.json"
    write_json(run_json, record)
    write_card_copies(run_dir, checked["cards"])
    specs = job_specs(config, checked, record["evaluation"], record["metric_suites_sha256"])
    def finished(spec: JobSpec, result: dict, where: dict) -> None:
        """Record a job as it ends, whichever executor ran it (`where`: the Ray node, attempts)."""
        record["jobs"][spec.name] = {"status": result["status"], "error": result["error"],
                                     "timings": result.get("timings", {}), **({"ray": where} if where else {})}
        write_json(run_json, record)

    if config.executor == "ray":
        from .ray_executor import run_on_ray

        run_on_ray(specs, checked["cards"], dataset, split_table, run_dir, config, progress, finished)
    else:
        for index, spec in enumerate(specs, 1):
            print(f"[{index}/{len(specs)}] {spec.name}: running", flush=True)
            inputs = JobInputs(dataset, split_table, run_dir / spec.method / f"seed{spec.seed}",
                               checked["device"], progress)
            result = run_job(spec, checked["cards"][spec.method], inputs)
            for note in result.get("repaired", []):
                print(f"[{index}/{len(specs)}] {note}", flush=True)
            finished(spec, result, {})
            print(f"[{index}/{len(specs)}] {spec.name}: {_status_line(result)}", flush=True)
    tasks = {name: card.task for name, card in checked["cards"].items()}
    outside = scored_entries(run_dir, record)
    tasks.update({entry.method: record["scored"][entry.method]["task"] for entry in outside})
    start = time.perf_counter()
    pool_seeds(run_dir, specs, tasks, dataset.manifest, record)
    record["timings"]["pooling_s"] = time.perf_counter() - start
    start = time.perf_counter()
    try:
        compared = specs + [entry for entry in outside if not record["scored"][entry.method].get("subset")]
        write_json(run_dir / "comparisons.json", compare_methods(run_dir, compared, tasks, dataset.manifest))
    except Exception as error:  # comparisons are a summary: record, do not lose the run
        (run_dir / "comparisons.json").unlink(missing_ok=True)  # an earlier run's would not match these jobs
        log.error("pairwise comparisons failed: %s", error)
        record["comparisons_error"] = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
    record["timings"]["comparisons_s"] = time.perf_counter() - start
    record["files"] = _sealed_run_files(run_dir, list(tasks))
    write_json(run_json, record)  # the report reads run.json, the seal of the run-level files included
    start = time.perf_counter()
    report_path = _report(run_dir, record, progress)
    record["timings"]["report_s"] = time.perf_counter() - start
    record["timings"]["total_s"] = time.perf_counter() - started
    write_json(run_json, record)
    return report_path


def _summary(run_dir: Path, record: dict, report_path: Path | None) -> int:
    """Print where the results are and what failed; the exit code (1 when a job or a summary failed)."""
    failed = {name: job for name, job in record["jobs"].items() if job["status"] != "done"}
    print(f"run folder: {run_dir}")
    if report_path:
        print(f"report: {report_path}")
    summary_errors = [f"{part} failed: {record[key].splitlines()[0]} (traceback in run.json, key {key!r})"
                      for part, key in (("pairwise comparisons", "comparisons_error"), ("the report", "report_error"))
                      if key in record]
    summary_errors += [f"pooling the seeds of {method} failed: {text.splitlines()[0]} (traceback in run.json, "
                       f"key 'pooling_errors')" for method, text in record.get("pooling_errors", {}).items()]
    for line in summary_errors:
        print(line)
    if failed:
        print(f"{len(failed)} of {len(record['jobs'])} job(s) failed:")
        for name, job in failed.items():
            print(f"  {name}: {job['error']} (traceback in {run_dir / name / 'error.txt'})")
        return 1
    print(f"all {len(record['jobs'])} job(s) done in {record['timings']['total_s']:.0f} s")
    return 1 if summary_errors else 0


@contextmanager
def run_log(path: Path):
    """Append benchbox's INFO log (epochs, validation scores, failures) to the run folder's run.log."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("benchbox")
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(min(previous_level or logging.INFO, logging.INFO))
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        handler.close()


def _status_line(result: dict) -> str:
    if result["status"] != "done":
        return f"FAILED ({result['error']})"
    if result.get("skipped"):
        return "done earlier, skipped"
    timings = result.get("timings", {})
    parts = [f"{key.removesuffix('_s')} {value:.1f}s" for key, value in timings.items() if value]
    return "done (" + ", ".join(parts) + ")"


def _report(run_dir: Path, record: dict, progress: bool) -> Path | None:
    """Render the markdown report; a rendering failure is recorded and does not lose the run."""
    try:
        from ..reports.render import render_report

        return render_report(run_dir, show_progress=progress)
    except Exception as error:
        log.error("report rendering failed: %s", error)
        record["report_error"] = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
        return None
