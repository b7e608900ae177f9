"""One (method, seed) job: fit or reuse, predict, score, explain, time; each stage saved as it ends.

A job folder holds `job.json` (what the job is), then `predictions.csv`, `efficiency.json`,
`explanations.npz` + `xai.json`, `metrics.json` and finally `done.json`, which seals the stage
files with their sha256. Each is written atomically, and a stage whose file exists for the same
job key is not redone, so a killed run resumes where it stopped. A finished job is skipped only
while its sealed files are intact: one that is missing or changed is recomputed, with the stages
computed from it, and the run says so. A failure writes `error.txt` with the traceback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.dataset import Dataset
from ..errors import BenchboxError
from ..labels import CLASSES, ISIC_COLUMNS, MALIGNANT_CLASSES, MALIGNANT_INDICES
from ..paths import atomic_write, cache_dir
from .store import (
    DONE_FILE,
    STAGE_FILES,
    DamagedFile,
    damaged_stage_files,
    read_json,
    read_predictions,
    read_record,
    read_stage_json,
    seal_job,
    write_csv,
    write_json,
    write_npz,
)

log = logging.getLogger("benchbox.run")


@dataclass
class JobSpec:
    """Everything that decides a job's result, and so its cache key."""

    method: str
    seed: int
    profile: str
    settings: dict
    input_size: int
    dataset_hash: str
    split_hash: str
    code: str
    pretrained: bool
    options: dict = field(default_factory=dict)  # explain_n, faithfulness, suites hash: scoring, not training

    def fit_key(self) -> str:
        """Identifies a trained model: reused across runs when all of this matches."""
        weights = self.options.get("weights_dir") if self.pretrained else None  # other weights, other model
        parts = [self.method, self.seed, self.profile, self.settings, self.input_size, self.dataset_hash,
                 self.split_hash, self.code, self.pretrained, weights]
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def job_key(self) -> str:
        extra = json.dumps(self.options, sort_keys=True)
        return hashlib.sha256((self.fit_key() + extra).encode()).hexdigest()

    @property
    def name(self) -> str:
        return f"{self.method}/seed{self.seed}"


@dataclass
class JobInputs:
    """The data of one job: the dataset, the split rows and where to write."""

    dataset: Dataset
    split: pd.DataFrame  # image_id, group_id, split
    job_dir: Path
    device: str
    progress: bool = True


def checkpoint_dir(spec: JobSpec) -> Path:
    return cache_dir() / "checkpoints" / spec.method / spec.fit_key()[:20]


def _image_set(inputs: JobInputs, split: str, size: int):
    rows = inputs.split[inputs.split["split"] == split]
    return inputs.dataset.image_set(rows["image_id"], size, groups=rows["group_id"], progress=inputs.progress)


def fit_or_load(spec: JobSpec, card, inputs: JobInputs):
    """A trained method: from the checkpoint cache when this exact fit was done before, else trained."""
    from ..training.runtime import seed_everything

    if card.fit_of:
        return variant_of_fit(spec, card, inputs)
    seed_everything(spec.seed)  # a plugin that builds its network in __init__ is seeded too
    method = card.create()
    folder = checkpoint_dir(spec)
    complete = folder / "complete.json"
    if complete.exists():
        try:
            method.load(folder)
        except BenchboxError as error:  # e.g. a file carrying code: never loaded, and retraining is the way out
            raise BenchboxError(f"the cached checkpoint of {spec.name} was refused ({error}); delete {folder} "
                                "and re-run to retrain this job") from None
        return method, {"reused_checkpoint": str(folder), "fit_s": read_json(complete)["fit_s"]}
    train = _image_set(inputs, "train", spec.input_size)
    val = _image_set(inputs, "val", spec.input_size)
    if card.needs_masks and train.masks is None:
        raise RuntimeError(f"{spec.method} needs lesion masks and the dataset has none")
    ctx = card.context(
        spec.profile, seed=spec.seed, device=inputs.device, pretrained=spec.pretrained,
        weights_dir=spec.options.get("weights_dir"), checkpoint_dir=inputs.job_dir / "work",
        progress=inputs.progress,
    )
    ctx.logger = log
    ctx.fit_key = spec.fit_key()  # a resume state saved under another fit is not trusted
    seed_everything(spec.seed)
    start = time.perf_counter()
    method.fit(train, val, ctx)
    fit_s = time.perf_counter() - start
    folder.mkdir(parents=True, exist_ok=True)
    method.save(folder)
    write_json(complete, {"fit_s": fit_s, "method": spec.method, "seed": spec.seed})
    return method, {"reused_checkpoint": None, "fit_s": fit_s}


def variant_of_fit(spec: JobSpec, card, inputs: JobInputs):
    """A variant (card `fit_of: BASE`) is BASE's trained model with other post-fit settings (e.g. the
    operating threshold's rule): BASE's fit of this seed is reused from the cache, or trained and cached
    for BASE's own job, so the two rows of a board differ only in what the variant changes."""
    base, base_spec = base_of_variant(spec, card)
    method, info = fit_or_load(base_spec, base, inputs)
    method.name, method.settings = card.name, card.settings(spec.profile)
    return method, info


def base_of_variant(spec: JobSpec, card):
    """The base card of a variant and the base's job spec for the same seed, checked: a variant may
    change only its class's post-fit settings."""
    from ..registry import get_card

    base = get_card(card.fit_of)
    base_settings, settings = base.settings(spec.profile), card.settings(spec.profile)
    allowed = set(base.load_class().post_fit_settings)
    changed = sorted(key for key in set(base_settings) | set(settings) if base_settings.get(key) != settings.get(key))
    if base.import_path != card.import_path or set(changed) - allowed:
        raise BenchboxError(
            f"{card.name} ({card.source}) is a variant of {base.name} but changes {sorted(set(changed) - allowed) or 'its class'}; "
            f"a variant shares its base's trained model, so it may change only {sorted(allowed) or 'nothing'}")
    return base, replace(spec, method=base.name, settings=base_settings, input_size=base.input_size(spec.profile))


# What a variant's job takes from its base's finished job instead of computing it again: post-fit
# settings move only the operating threshold, so the probabilities, the explanations (of the argmax
# class) and the latency of the shared networks are the base's.
SHARED_WITH_BASE = ("predictions.csv", "efficiency.json", "xai.json", "explanations.npz")


def adopt_base_outputs(spec: JobSpec, card, job_dir: Path) -> list[str]:
    """Copy into a variant's job folder the stage files its base's job of the same seed finished (in
    the same run folder, for exactly the base spec: its done.json's job key), where the variant has
    none yet; returns the names copied. Nothing when the base has not finished (the variant then
    computes its own)."""
    import shutil

    if not card.fit_of:
        return []
    _, base_spec = base_of_variant(spec, card)
    base_dir = job_dir.parent.parent / base_spec.method / job_dir.name
    done = read_record(base_dir / DONE_FILE) if (base_dir / DONE_FILE).is_file() else None
    if done is None or done.get("job_key") != base_spec.job_key() or damaged_stage_files(base_dir, done):
        return []
    copied = [name for name in SHARED_WITH_BASE if (base_dir / name).is_file() and not (job_dir / name).exists()]
    for name in copied:
        shutil.copyfile(base_dir / name, job_dir / name)
    return copied


def predictions_frame(method, inputs: JobInputs, size: int) -> pd.DataFrame:
    """Probabilities on val and test, one row per image, in the predictions.csv layout."""
    from ..metrics.validation import validate_predictions

    manifest = inputs.dataset.manifest.set_index("image_id")
    frames = []
    for split in ("val", "test"):
        images = _image_set(inputs, split, size)
        proba = np.asarray(method.predict_proba(images.images), dtype=np.float64)
        validate_predictions(method.name, proba, method.task, images.image_ids, images.image_ids)
        proba = proba / proba.sum(axis=1, keepdims=True)  # float32 softmax rows sum to 1 only within ~1e-7
        frame = pd.DataFrame({
            "image_id": images.image_ids,
            "lesion_id": manifest.loc[images.image_ids, "lesion_id"].to_numpy(),
            "split": split,
            "y_true": [CLASSES[i] for i in images.labels],
        })
        for j, name in enumerate(method.classes):
            frame[f"p_{name}"] = proba[:, j]
        frame["y_pred"] = [method.classes[i] for i in proba.argmax(axis=1)]
        if method.task == "multiclass":
            frame["p_malignant"] = proba[:, list(MALIGNANT_INDICES)].sum(axis=1)
        frames.append(frame)
    columns = ["image_id", "lesion_id", "split", "y_true", "y_pred"]
    out = pd.concat(frames, ignore_index=True)
    return out[columns + [c for c in out.columns if c.startswith("p_")]]


def probabilities(frame: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, proba) of a predictions frame in the task's label space."""
    if task == "multiclass":
        y_true = frame["y_true"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
        return y_true, frame[[f"p_{c}" for c in CLASSES]].to_numpy()
    return _malignant(frame), frame[["p_benign", "p_malignant"]].to_numpy()


def youden_threshold(malignant: np.ndarray, score: np.ndarray) -> float:
    """The validation threshold maximising sensitivity + specificity (used when a method sets none)."""
    from sklearn.metrics import roc_curve

    if malignant.min() == malignant.max():
        return 0.5
    fpr, tpr, thresholds = roc_curve(malignant, score)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def isic_submission(frame: pd.DataFrame) -> pd.DataFrame:
    """The ISIC 2018 Task 3 submission CSV (image,MEL,NV,BCC,AKIEC,BKL,DF,VASC) of the test rows."""
    test = frame[frame["split"] == "test"]
    out = pd.DataFrame({"image": test["image_id"].to_numpy()})
    for column in ISIC_COLUMNS:
        out[column] = test[f"p_{column.lower()}"].to_numpy()
    return out


def unscored_ids(manifest: pd.DataFrame) -> frozenset[str]:
    """Test images the dataset's official scoring leaves out of every metric (isic2018: ISIC_0035068),
    though they stay in the data and in the ISIC submission; empty for every other dataset."""
    if "scored" not in manifest:
        return frozenset()
    return frozenset(manifest.loc[~manifest["scored"].astype(bool), "image_id"])


def score(method: str, task: str, frame: pd.DataFrame, manifest: pd.DataFrame, method_threshold) -> tuple[dict, dict]:
    """Classification metrics on test (operating point from val only) and the confusion matrix."""
    from ..metrics.classification import confusion_matrix
    from ..metrics.config import load_config
    from ..metrics.suite import evaluate

    config = load_config()
    val, test = frame[frame["split"] == "val"], frame[frame["split"] == "test"]
    test = test[~test["image_id"].isin(unscored_ids(manifest))]
    threshold = method_threshold
    if threshold is None:
        threshold = youden_threshold(_malignant(val), val["p_malignant"].to_numpy())
    y_true, proba = probabilities(test, task)
    rows = manifest.set_index("image_id").loc[test["image_id"]]
    from ..metrics.subgroups import adjustment_strata, subgroup_attributes as make_attributes

    attributes = make_attributes(rows, config.subgroup_attributes, config.age_band_edges, config.ita_light_dark_cut)
    metrics = evaluate(task, y_true, proba, test["lesion_id"].to_numpy(), attributes, threshold, config,
                       method=method, strata=adjustment_strata(rows, config))
    extra = {"threshold": threshold, "threshold_rule": "method" if method_threshold is not None else "youden_on_val"}
    if task == "multiclass":
        extra["confusion_matrix"] = confusion_matrix(y_true, proba.argmax(axis=1), len(CLASSES)).tolist()
    return metrics, extra


def _warn_if_degenerate(spec: JobSpec, frame: pd.DataFrame, threshold: float) -> None:
    """Say in the run log when the validation threshold puts (nearly) all test images on one side."""
    from ..metrics.operating_point import degenerate_operating_point

    val, test = frame[frame["split"] == "val"], frame[frame["split"] == "test"]
    why = degenerate_operating_point(val["p_malignant"], test["p_malignant"], _malignant(test), threshold)
    if why:
        log.warning("%s: %s", spec.name, why)


def _malignant(frame: pd.DataFrame) -> np.ndarray:
    return frame["y_true"].isin(MALIGNANT_CLASSES).astype(int).to_numpy()


def explanation_subset(inputs: JobInputs, n: int, seed: int) -> pd.DataFrame:
    """A fixed, seeded choice of up to n test images with lesion masks, or, on data with no masks
    at all (ISIC 2018 Task 3), of any test images: faithfulness and randomisation need none."""
    manifest = inputs.dataset.manifest
    test_ids = inputs.split.loc[inputs.split["split"] == "test", "image_id"]
    test = manifest[manifest["image_id"].isin(test_ids)]
    with_masks = test[test["mask_path"] != ""]
    chosen = with_masks if len(with_masks) else test
    if len(chosen) > n:
        chosen = chosen.sample(n=n, random_state=seed)
    return chosen.sort_values("image_id")


def explain_and_score(spec: JobSpec, method, inputs: JobInputs) -> tuple[dict, dict]:
    """Maps of every explainer and the centred Gaussian on the subset, and their localisation and
    faithfulness scores (per-image arrays; summarised with clustered CIs by the caller).

    Each explainer of a method with torch networks also gets the model-parameter randomisation
    check: `xai.<explainer>.mprt_spearman` / `.mprt_ssim`, each image's map similarity once every
    weight is re-initialised (lower: the map depends on the model). It randomises a deep copy of
    the whole method, every member of an ensemble at once, and explains through `method.explain`,
    so the maps are averaged and sharpened as the scored ones are. The Gaussian baseline has no
    model, so it gets no such score (the board shows n/a); nor does a method without networks.
    The per-stage curves and stage names go to explanations.npz (`mprt_<explainer>_*_curve`, `mprt_stages`).
    Without masks, localisation is not scored: `scores["no_masks"]` is set, and the caller records
    each localisation metric as NaN with the reason "no masks".
    """
    from ..explain.baseline import centred_gaussian_map
    from ..explain.faithfulness import deletion_insertion_auc
    from ..explain.localisation import localisation_scores
    from ..explain.randomisation import model_randomisation_check
    from ..explain.road import road_scores

    subset = explanation_subset(inputs, spec.options["explain_n"], spec.seed)
    if subset.empty:
        return {}, {"reason": "no test images"}
    images = inputs.dataset.image_set(subset["image_id"], spec.input_size, progress=False)
    targets = method.predict_proba(images.images).argmax(axis=1)  # explain the model's own decision
    size = spec.input_size
    maps = {name: method.explain(images.images, targets, name) for name in method.explainers}
    maps["gaussian"] = np.broadcast_to(centred_gaussian_map(size, size), (len(images), size, size)).copy()
    per_image, arrays = {}, {"images": images.images, "image_ids": images.image_ids.astype(str), "targets": targets}
    if images.masks is not None:
        arrays["masks"] = images.masks
    for name, explained in maps.items():
        arrays[f"map_{name}"] = explained.astype(np.float32)
        if images.masks is not None:
            for key, values in localisation_scores(explained, images.masks, seed=spec.seed).items():
                per_image[f"xai.{name}.{key}"] = values
        if spec.options["faithfulness"] in ("fast", "road"):
            curves = deletion_insertion_auc(method.predict_proba, images.images, explained, targets,
                                            steps=spec.options["deletion_steps"], seed=spec.seed)
            per_image[f"xai.{name}.deletion_auc"] = curves["deletion_auc"]
            per_image[f"xai.{name}.insertion_auc"] = curves["insertion_auc"]
        if spec.options["faithfulness"] == "road":
            road = road_scores(method.predict_proba, images.images, explained, targets, seed=spec.seed)
            for key in ("road_morf", "road_lerf"):
                values = np.full(len(images), np.nan)
                values[road["index"]] = road[key]
                per_image[f"xai.{name}.{key}"] = values
    n_check = min(len(images), spec.options.get("randomisation_n") or len(images))  # the first n: its cost is 5 passes
    if method.networks() and n_check:
        checked = images.images[:n_check], targets[:n_check]
        for name in method.explainers:
            check = model_randomisation_check(method, lambda m, name=name: m.explain(*checked, name),
                                              networks=lambda m: m.networks(), seed=spec.seed,
                                              reference=maps[name][:n_check])
            for key in ("spearman", "ssim"):
                values = np.full(len(images), np.nan)  # NaN: not checked, left out of the mean
                values[:n_check] = check[key]
                per_image[f"xai.{name}.mprt_{key}"] = values
            arrays[f"mprt_{name}_spearman_curve"] = check["spearman_curve"]
            arrays[f"mprt_{name}_ssim_curve"] = check["ssim_curve"]
            arrays["mprt_stages"] = np.asarray(check["stages"], dtype=str)
    lesions = inputs.dataset.manifest.set_index("image_id").loc[images.image_ids, "lesion_id"].to_numpy()
    return {"per_image": per_image, "lesions": lesions, "no_masks": images.masks is None, "explainers": list(maps)}, arrays


def no_mask_entries(explainers: list[str]) -> dict[str, dict]:
    """Every localisation metric of every explainer as NaN for the reason "no masks"."""
    from ..explain.localisation import LOCALISATION_METRICS
    from ..metrics.config import load_config

    config = load_config()
    return {f"xai.{name}.{key}": {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0, "ci_method": None,
                                  "higher_is_better": config.higher_is_better(f"xai.{name}.{key}"), "reason": "no masks"}
            for name in explainers for key in LOCALISATION_METRICS}


def efficiency_metrics(method, spec: JobSpec) -> dict[str, dict]:
    """Parameters, FLOPs, latency and throughput as metric entries (no CI: they are measurements)."""
    from ..efficiency import measure_efficiency

    measured = measure_efficiency(method, spec.input_size, repeats=spec.options["latency_repeats"],
                                  throughput_repeats=spec.options["throughput_repeats"])
    names = {
        "params_m": "params_m", "gflops": "gflops", "ms_p50": "latency.ms_p50", "ms_p95": "latency.ms_p95",
        "images_per_s": "throughput.images_per_s", "peak_memory_mib": "peak_memory_mb",
    }
    from ..metrics.config import load_config

    config = load_config()
    entries = {
        metric: {"value": measured[key], "ci_low": None, "ci_high": None, "n": None,
                 "higher_is_better": config.higher_is_better(metric), "ci_method": None, "reason": None}
        for key, metric in names.items()
    }
    return {"metrics": entries, "details": measured}


REMOVED_ON_RESTART = (*STAGE_FILES, "error.txt", DONE_FILE)

# A stage file -> the files computed from it, which a damaged copy takes with it. One stage writes
# explanations.npz and xai.json together, so each takes the other; metrics.json is recomputed by
# every unfinished job anyway and isic_submission.csv is rewritten from predictions.csv.
DERIVED = {
    "predictions.csv": ("isic_submission.csv", "metrics.json"),
    "isic_submission.csv": (),
    "efficiency.json": ("metrics.json",),
    "explanations.npz": ("xai.json", "metrics.json"),
    "xai.json": ("explanations.npz", "metrics.json"),
    "metrics.json": (),
}
READ_PREDICTIONS = {"dtype": {"image_id": str, "lesion_id": str}}


def _remove_stage_files(job_dir: Path) -> None:
    for name in REMOVED_ON_RESTART:
        (job_dir / name).unlink(missing_ok=True)


def _discard(job_dir: Path, problems: dict[str, str], job_name: str) -> list[str]:
    """Remove damaged stage files, what was computed from them and done.json; returns what it logged."""
    notes = []
    for name, problem in problems.items():
        derived = [d for d in DERIVED.get(name, ()) if d not in problems and (job_dir / d).exists()]
        also = f", with {' and '.join(derived)} computed from it" if derived else ""
        notes.append(f"{job_name}: {name} {problem}; recomputing it{also}")
        log.warning(notes[-1])
        for stale in (name, *DERIVED.get(name, ())):
            (job_dir / stale).unlink(missing_ok=True)
    (job_dir / DONE_FILE).unlink(missing_ok=True)
    return notes


def _check_finished(spec: JobSpec, job_dir: Path, key: str) -> tuple[dict | None, list[str]]:
    """(done.json when the job is finished and every sealed file is intact, notes on what was not)."""
    done_path = job_dir / DONE_FILE
    if not done_path.exists():
        return None, []
    done = read_record(done_path)
    if done is None:
        note = (f"{spec.name}: {DONE_FILE} is damaged, so its stage files cannot be verified; recomputing "
                "every stage (a trained model in the checkpoint cache is reused)")
        log.warning(note)
        _remove_stage_files(job_dir)
        return None, [note]
    if done.get("job_key") != key:
        return None, []
    problems = damaged_stage_files(job_dir, done)
    if not problems:
        return done, []
    return None, _discard(job_dir, problems, spec.name)


def _sound_stage(job_dir: Path, name: str, read, job_name: str, notes: list[str]):
    """An unfinished job's stage file read back (a killed run's work), or None when it is absent or
    damaged (then removed with what was computed from it, and noted)."""
    if not (job_dir / name).exists():
        return None
    try:
        return read(job_dir / name)
    except DamagedFile as damage:
        notes += _discard(job_dir, {name: damage.problem}, job_name)
        return None


def run_job(spec: JobSpec, card, inputs: JobInputs) -> dict:
    """Run or resume one job; returns {"status", "error", "timings", "repaired"} and never raises for a
    method's fault. "repaired" lists the damaged stage files that were recomputed."""
    job_dir = inputs.job_dir
    key = spec.job_key()
    done, notes = _check_finished(spec, job_dir, key)
    if done is not None:
        return {"status": "done", "error": None, "skipped": True, "repaired": [], **done}
    job_dir.mkdir(parents=True, exist_ok=True)
    marker = job_dir / "job.json"
    recorded = read_record(marker)
    if recorded is None or recorded.get("job_key") != key:
        _remove_stage_files(job_dir)
        write_json(marker, {"job_key": key, "fit_key": spec.fit_key(), "method": spec.method, "seed": spec.seed,
                            "profile": spec.profile, "settings": spec.settings, "input_size": spec.input_size})
    timings: dict[str, float] = {}
    stage = "fit"
    try:
        start = time.perf_counter()
        method, fit_info = fit_or_load(spec, card, inputs)
        if fit_info["reused_checkpoint"] is None:  # a new model: nothing an older one wrote may be reused
            _remove_stage_files(job_dir)
        timings["fit_s"] = fit_info["fit_s"] if fit_info["reused_checkpoint"] is None else 0.0
        timings["load_s"] = time.perf_counter() - start if fit_info["reused_checkpoint"] else 0.0
        adopted = adopt_base_outputs(spec, card, job_dir)
        if adopted:
            log.info("%s: %s copied from %s's finished job (the same trained networks)", spec.name,
                     ", ".join(adopted), card.fit_of)

        stage = "predict"
        start = time.perf_counter()
        predictions_path = job_dir / "predictions.csv"
        isic_path = job_dir / "isic_submission.csv"
        frame = _sound_stage(job_dir, "predictions.csv",
                             lambda path: read_predictions(path, card.task, **READ_PREDICTIONS), spec.name, notes)
        if frame is None:
            frame = predictions_frame(method, inputs, spec.input_size)
            write_csv(predictions_path, frame)
        if card.task == "multiclass" and not isic_path.exists():
            write_csv(isic_path, isic_submission(frame))
        timings["predict_s"] = time.perf_counter() - start

        stage = "efficiency"
        start = time.perf_counter()
        efficiency_path = job_dir / "efficiency.json"
        if _sound_stage(job_dir, "efficiency.json", lambda path: read_stage_json(path, ("metrics",)),
                        spec.name, notes) is None:
            write_json(efficiency_path, efficiency_metrics(method, spec))
        timings["efficiency_s"] = time.perf_counter() - start

        stage = "explain"
        start = time.perf_counter()
        xai_path = job_dir / "xai.json"
        if _sound_stage(job_dir, "xai.json", _read_xai, spec.name, notes) is None:
            xai_metrics = {}
            scores, arrays = explain_and_score(spec, method, inputs)
            if scores:
                from ..metrics.suite import evaluate_means

                write_npz(job_dir / "explanations.npz", **arrays)
                xai_metrics = evaluate_means(scores["per_image"], scores["lesions"])
                if scores["no_masks"]:
                    xai_metrics.update(no_mask_entries(scores["explainers"]))
            write_json(xai_path, {"metrics": xai_metrics, "skipped": None if scores else arrays.get("reason")})
        timings["explain_s"] = time.perf_counter() - start

        stage = "metrics"
        start = time.perf_counter()
        manifest = inputs.dataset.manifest
        metrics, extra = score(spec.method, card.task, frame, manifest, method.operating_threshold())
        _warn_if_degenerate(spec, frame, extra["threshold"])
        metrics.update(read_json(efficiency_path)["metrics"])
        metrics.update(read_json(xai_path)["metrics"])
        if method.segments:
            metrics.update(segmentation_metrics(method, inputs, spec))
        classes = list(CLASSES) if card.task == "multiclass" else ["benign", "malignant"]
        write_json(job_dir / "metrics.json", {"method": spec.method, "task": card.task, "seed": spec.seed,
                                              "classes": classes, "metrics": metrics, **extra})
        timings["metrics_s"] = time.perf_counter() - start
    except Exception as error:  # one failing method never takes the others down
        text = f"{spec.name} failed during {stage}: {type(error).__name__}: {error}\n\n{traceback.format_exc()}"
        atomic_write(job_dir / "error.txt", lambda tmp: Path(tmp).write_text(text))
        log.error("%s failed during %s: %s: %s", spec.name, stage, type(error).__name__, error)
        return {"status": "failed", "error": f"{stage}: {type(error).__name__}: {error}", "timings": timings,
                "repaired": notes}
    (job_dir / "error.txt").unlink(missing_ok=True)  # an earlier attempt's failure no longer holds
    seal_job(job_dir, {"job_key": key, "timings": timings, "reused_checkpoint": fit_info["reused_checkpoint"]})
    return {"status": "done", "error": None, "skipped": False, "timings": timings, "repaired": notes}


def _read_xai(path: Path) -> dict:
    """xai.json, which promises explanations.npz unless it says why nothing was explained."""
    data = read_stage_json(path, ("metrics",))
    if data.get("skipped") is None and not (path.parent / "explanations.npz").is_file():
        raise DamagedFile(path, "lists explanation scores but explanations.npz is missing")
    return data


def segmentation_metrics(method, inputs: JobInputs, spec: JobSpec) -> dict:
    """Dice and IoU of the method's predicted masks on the test images that have true masks."""
    from ..metrics.suite import evaluate_segmentation

    subset = explanation_subset(inputs, len(inputs.split), spec.seed)
    if subset.empty:
        return {}
    images = inputs.dataset.image_set(subset["image_id"], spec.input_size, progress=False)
    predicted = method.predicted_masks(images.images)
    return evaluate_segmentation(predicted, images.masks, subset["lesion_id"].to_numpy())
