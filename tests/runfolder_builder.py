"""Build a complete, self-consistent run folder (the format of reports/README.md) for report and
gate tests: predictions drawn from a seeded model of each method, metrics.json computed from them
with scikit-learn, made-up but plausible CIs, explanations, efficiency, subgroups, comparisons."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    matthews_corrcoef,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from benchbox.labels import BINARY_CLASSES, CLASSES, ISIC_COLUMNS, MALIGNANT_CLASSES
from benchbox.metrics.seeds import pool_entries

# name -> (task, signal strength, explainers, predicts masks)
METHODS = {
    "msfa": ("multiclass", 2.4, ("gradcam",), False),
    "soft_attention": ("multiclass", 1.4, ("attention", "gradcam"), False),
    "dual_task": ("multiclass", 1.3, ("gradcam",), True),
    "recall_ensemble": ("binary", 1.8, ("gradcam_pp",), False),
    "xception": ("binary", 1.0, ("gradcam", "smoothgrad"), False),
}
FAILED_METHOD = "resnet50"
PRIORS = np.array([0.06, 0.08, 0.12, 0.05, 0.13, 0.51, 0.05])
N_TEST, N_VAL, SIZE = 240, 80, 48
LOWER_IS_BETTER = {"ece", "brier", "nll", "binary.ece", "latency.ms_p50", "latency.ms_p95", "params_m",
                   "gflops", "peak_memory_mb"}
SPLIT_HASH = "5f1d" + "0" * 60
BINARY_THRESHOLD = 0.4
DATASET_HASH = "a3c9" + "1" * 60


def _entry(name: str, value: float, half_width: float | None, n: int, reason: str | None = None) -> dict:
    """A metrics.json entry; the CI is value +- half_width (None: no CI, as for efficiency)."""
    higher = None if ".gap" in name else not (name in LOWER_IS_BETTER or name.endswith(".deletion_auc"))
    low = high = None
    if half_width is not None and np.isfinite(value):
        low, high = value - half_width, value + half_width
        if ".gap" not in name and name != "nll" and value <= 1:  # bounded: CI inside [0, 1]
            low, high = max(low, 0.0), min(high, 1.0)
    return {"value": None if not np.isfinite(value) else float(value), "ci_low": low, "ci_high": high,
            "n": n, "higher_is_better": higher, "ci_method": "bca" if low is not None else None,
            "reason": reason}


def _dataset(rng: np.random.Generator) -> pd.DataFrame:
    n = N_TEST + N_VAL
    labels = np.concatenate([np.repeat(np.arange(7), 6), rng.choice(7, n - 42, p=PRIORS)])
    lesions = np.minimum(np.arange(n) // 2 + rng.integers(0, 2, n), n - 1)
    return pd.DataFrame({
        "image_id": [f"ISIC_{i:07d}" for i in range(n)],
        "lesion_id": [f"HAM_{lesion:07d}" for lesion in lesions],
        "split": ["test"] * N_TEST + ["val"] * N_VAL,
        "dx": np.asarray(CLASSES)[labels],
        "sex": rng.choice(["female", "male", "other"], n, p=[0.52, 0.43, 0.05]),
        "light_dark": rng.choice(["light", "dark"], n, p=[0.7, 0.3]),
    })


def _predict(data: pd.DataFrame, task: str, signal: float, rng: np.random.Generator) -> pd.DataFrame:
    malignant = data["dx"].isin(MALIGNANT_CLASSES).to_numpy()
    darker_penalty = np.where(data["light_dark"] == "dark", 0.55, 1.0)
    frame = data[["image_id", "lesion_id", "split"]].copy()
    if task == "multiclass":
        labels = data["dx"].map(CLASSES.index).to_numpy()
        logits = rng.normal(size=(len(data), 7)) + signal * darker_penalty[:, None] * np.eye(7)[labels]
        logits += np.log(PRIORS)
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        frame["y_true"] = data["dx"].to_numpy()
        frame["y_pred"] = np.asarray(CLASSES)[probabilities.argmax(axis=1)]
        for i, name in enumerate(CLASSES):
            frame[f"p_{name}"] = probabilities[:, i]
        frame["p_malignant"] = probabilities[:, [CLASSES.index(c) for c in MALIGNANT_CLASSES]].sum(axis=1)
    else:
        logit = signal * darker_penalty * (2 * malignant - 1) * 0.9 + rng.normal(size=len(data)) - 0.6
        p_malignant = 1 / (1 + np.exp(-logit))
        frame["y_true"] = data["dx"].to_numpy()  # always the 7 class names, as the runner writes them
        frame["y_pred"] = np.where(p_malignant >= 0.5, "malignant", "benign")
        frame["p_benign"] = 1 - p_malignant
        frame["p_malignant"] = p_malignant
    return frame


def _ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return total


def _binary_metrics(truth: np.ndarray, score: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    fpr, tpr, _ = roc_curve(truth, score)
    specificity = 1 - fpr
    confidence = np.maximum(score, 1 - score)
    return {
        "binary.auc": roc_auc_score(truth, score),
        "binary.sensitivity": recall_score(truth, predicted),
        "binary.specificity": recall_score(~truth, ~predicted),
        "binary.f1": f1_score(truth, predicted),
        "binary.sens_at_spec90": float(tpr[specificity >= 0.9].max()),
        "binary.pauc_sens80": float(np.trapezoid(specificity[tpr >= 0.8], tpr[tpr >= 0.8]) / 0.2),
        "binary.ece": _ece(confidence, (score >= 0.5) == truth),
    }


def _metrics(frame: pd.DataFrame, data: pd.DataFrame, task: str, method: str, explainers: tuple[str, ...],
             masks: bool, rng: np.random.Generator) -> dict:
    test = frame["split"].to_numpy() == "test"
    f, d = frame[test], data[test]
    n = len(f)
    malignant = d["dx"].isin(MALIGNANT_CLASSES).to_numpy()
    half = lambda: float(rng.uniform(0.02, 0.07))  # noqa: E731
    values: dict[str, float] = {}
    if task == "multiclass":
        truth, predicted = f["y_true"].to_numpy(), f["y_pred"].to_numpy()
        probabilities = f[[f"p_{c}" for c in CLASSES]].to_numpy()
        onehot = np.eye(7)[[CLASSES.index(t) for t in truth]]
        values.update({
            "accuracy": accuracy_score(truth, predicted),
            "balanced_accuracy": balanced_accuracy_score(truth, predicted),
            "mcc": matthews_corrcoef(truth, predicted),
            "f1_macro": f1_score(truth, predicted, average="macro", labels=CLASSES, zero_division=0),
            "f1_weighted": f1_score(truth, predicted, average="weighted", labels=CLASSES, zero_division=0),
            "auc_macro": roc_auc_score(onehot, probabilities, average="macro"),
            "auc_weighted": roc_auc_score(onehot, probabilities, average="weighted"),
            "ece": _ece(probabilities.max(axis=1), predicted == truth),
            "brier": float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1))),
            "nll": log_loss(truth, probabilities, labels=list(CLASSES)),
        })
        for i, name in enumerate(CLASSES):
            values[f"f1.{name}"] = f1_score(truth == name, predicted == name, zero_division=0)
            values[f"precision.{name}"] = precision_score(truth == name, predicted == name, zero_division=0)
            values[f"recall.{name}"] = recall_score(truth == name, predicted == name, zero_division=0)
            values[f"auc.{name}"] = roc_auc_score(truth == name, probabilities[:, i])
        matrix = confusion_matrix(truth, predicted, labels=list(CLASSES))
        classes = list(CLASSES)
        binary_predicted = np.isin(predicted, MALIGNANT_CLASSES)
    else:
        binary_predicted = f["p_malignant"].to_numpy() >= BINARY_THRESHOLD
        matrix = None  # like the runner: binary methods carry their threshold instead
        classes = list(BINARY_CLASSES)
        values["brier"] = brier_score_loss(malignant, f["p_malignant"])
    values.update(_binary_metrics(malignant, f["p_malignant"].to_numpy(), binary_predicted))
    entries = {name: _entry(name, value, half(), n) for name, value in values.items()}

    scale = {"msfa": 1.0, "soft_attention": 3.4, "dual_task": 2.1, "recall_ensemble": 5.6, "xception": 3.0}[method]
    for name, value in {"latency.ms_p50": 4.1 * scale, "latency.ms_p95": 5.3 * scale,
                        "throughput.images_per_s": 612 / scale, "params_m": 11.7 * scale,
                        "gflops": 0.29 * scale, "peak_memory_mb": 143 * scale}.items():
        entries[name] = _entry(name, value, None, 1)

    for explainer in (*explainers, "gaussian"):
        base = 0.18 if explainer == "gaussian" else float(rng.uniform(0.25, 0.6))
        for short, value in {"iou": base, "iou_at_mask_area": base + 0.05, "pointing_game": min(base * 1.6, 1),
                             "energy_pointing_game": base + 0.1, "deletion_auc": 0.5 - base / 2,
                             "insertion_auc": 0.4 + base / 2}.items():
            entries[f"xai.{explainer}.{short}"] = _entry(f"xai.{explainer}.{short}", value, half(), 64)

    for attribute, groups in {"light_dark": ("light", "dark"), "sex": ("female", "male", "other")}.items():
        group_auc = {}
        for group in groups:
            inside = (d[attribute] == group).to_numpy() if attribute in d else np.zeros(n, bool)
            name = f"subgroup.{attribute}.binary.auc.{group}"
            if inside.sum() < 30:
                reason = f"group has {int(inside.sum())} images, below the minimum of 30"
                entries[name] = _entry(name, np.nan, None, int(inside.sum()), reason)
                entries[f"subgroup.{attribute}.binary.auc.gap.{group}"] = _entry(
                    f"subgroup.{attribute}.binary.auc.gap.{group}", np.nan, None, int(inside.sum()), reason)
                continue
            group_auc[group] = roc_auc_score(malignant[inside], f["p_malignant"].to_numpy()[inside])
            rest_auc = roc_auc_score(malignant[~inside], f["p_malignant"].to_numpy()[~inside])
            entries[name] = _entry(name, group_auc[group], 0.08, int(inside.sum()))
            gap_name = f"subgroup.{attribute}.binary.auc.gap.{group}"
            entries[gap_name] = _entry(gap_name, group_auc[group] - rest_auc, 0.06, int(inside.sum()))
        worst = min(group_auc, key=lambda g: entries[f"subgroup.{attribute}.binary.auc.gap.{g}"]["value"])
        entries[f"subgroup.{attribute}.binary.auc.worst_gap"] = {
            **entries[f"subgroup.{attribute}.binary.auc.gap.{worst}"], "group": worst}
        for task in (("binary", "multiclass") if matrix is not None else ("binary",)):
            entries[f"subgroup.{attribute}.{task}.heterogeneity_p"] = {
                **_entry("heterogeneity_p", {"binary": 0.0125, "multiclass": 0.47}[task], None, n),
                "higher_is_better": None}  # made up, without drawing from rng (that would move every later draw)
    if masks:
        entries["segmentation.dice"] = _entry("segmentation.dice", 0.83, 0.02, n)
        entries["segmentation.iou"] = _entry("segmentation.iou", 0.72, 0.025, n)
    extra = {"confusion_matrix": matrix.tolist()} if matrix is not None else {"threshold": BINARY_THRESHOLD}
    return {"metrics": entries, "classes": classes, **extra}


def _explanations(path: Path, explainers: tuple[str, ...], rng: np.random.Generator, count: int = 6) -> None:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images, masks, maps = [], [], {e: [] for e in (*explainers, "gaussian")}
    for _ in range(count):
        cy, cx, radius = rng.uniform(14, 34), rng.uniform(14, 34), rng.uniform(7, 12)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
        skin = np.array([224, 178, 150]) * rng.uniform(0.7, 1.0)
        image = np.where(mask[..., None], np.array([110, 70, 50]), skin) + rng.normal(0, 6, (SIZE, SIZE, 3))
        images.append(np.clip(image, 0, 255).astype(np.uint8))
        masks.append(mask)
        for explainer in explainers:
            oy, ox = rng.normal(0, 4, 2)
            blob = np.exp(-((yy - cy - oy) ** 2 + (xx - cx - ox) ** 2) / (2 * (radius * 0.9) ** 2))
            blob = np.clip(blob + rng.uniform(0, 0.15, blob.shape), 0, None)
            maps[explainer].append(blob / blob.max())
        maps["gaussian"].append(np.exp(-((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2) / (2 * (SIZE / 4) ** 2)))
    np.savez_compressed(path, images=np.stack(images), masks=np.stack(masks),
                        image_ids=np.array([f"ISIC_{i:07d}" for i in range(count)]),
                        **{f"map_{k}": np.stack(v).astype(np.float32) for k, v in maps.items()})


def _comparisons(per_seed: dict[int, dict[str, dict]]) -> list[dict]:
    """Pairwise comparisons on each board's primary metric as the runner writes them (one row per
    pair, on the seed means); p_holm is small when the difference is large, so both kinds occur."""
    jobs = next(iter(per_seed.values()))
    mean = {m: {metric: np.mean([per_seed[s][m]["metrics"][metric]["value"] for s in per_seed])
                for metric in ("binary.auc", "mcc") if metric in jobs[m]["metrics"]} for m in jobs}
    rows = []
    boards = {"binary": ("binary.auc", list(jobs)),
              "multiclass": ("mcc", [m for m, j in jobs.items() if j["task"] == "multiclass"])}
    for board, (metric, methods) in boards.items():
        for a, b in combinations(methods, 2):
            diff = float(mean[a][metric] - mean[b][metric])
            p = 0.0004 if abs(diff) > 0.08 else 0.21
            rows.append({"board": board, "metric": metric, "a": a, "b": b, "diff": diff,
                         "ci_low": diff - 0.06, "ci_high": diff + 0.06, "p_value": p / 3, "p_holm": p,
                         "test": "seed-aware t" if len(per_seed) > 1 else "delong"})
    return rows


def build_run(root: Path, seeds: tuple[int, ...] = (0,), methods: tuple[str, ...] = tuple(METHODS),
              failed: tuple[str, ...] = (FAILED_METHOD,)) -> Path:
    """Write a run folder under `root` and return it."""
    run_dir = root / "run-fixture"
    data = _dataset(np.random.default_rng(2024))
    jobs_index, per_seed = {}, {seed: {} for seed in seeds}
    for method in methods:
        task, signal, explainers, masks = METHODS[method]
        for seed in seeds:
            rng = np.random.default_rng([seed, sum(map(ord, method))])
            folder = run_dir / method / f"seed{seed}"
            folder.mkdir(parents=True)
            frame = _predict(data, task, signal, rng)
            frame.to_csv(folder / "predictions.csv", index=False)
            computed = _metrics(frame, data, task, method, explainers, masks, rng)
            metrics = {"method": method, "task": task, "seed": seed, **computed}
            (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
            efficiency = {name: entry for name, entry in computed["metrics"].items() if entry["ci_low"] is None
                          and not name.startswith(("xai.", "subgroup."))}
            details = {"device": "cpu (fixture CPU)", "torch_threads": 2.0, "input_size": "64x64"}
            (folder / "efficiency.json").write_text(json.dumps({"metrics": efficiency, "details": details}))
            submission = pd.DataFrame({"image": frame["image_id"]})
            for column in ISIC_COLUMNS:
                submission[column] = frame.get(f"p_{column.lower()}", 0.0)
            submission.to_csv(folder / "isic_submission.csv", index=False)
            _explanations(folder / "explanations.npz", explainers, rng)
            jobs_index[f"{method}/seed{seed}"] = {"status": "done", "error": None}
            per_seed[seed][method] = metrics
    for method in failed:
        for seed in seeds:
            folder = run_dir / method / f"seed{seed}"
            folder.mkdir(parents=True)
            error = "Traceback (most recent call last):\nRuntimeError: CUDA out of memory (planted)"
            (folder / "error.txt").write_text(error)
            jobs_index[f"{method}/seed{seed}"] = {"status": "failed", "error": error}
    run = {
        "run_id": "20250101-000000-fixture",
        "created": "2025-01-01T00:00:00Z",
        "config": {"methods": [*methods, *failed], "data": "synthderm", "profile": "quick",
                   "seeds": list(seeds), "split": None},
        "code_version": {"benchbox": "0.1.0", "git": "v0.1.0-3-gabc1234-dirty", "source_sha256": "9e8d" + "2" * 60},
        "benchbox_version": "0.1.0",
        "libraries": {"torch": "2.4.0", "numpy": np.__version__},
        "hardware": {"machine": "x86_64", "cpu_count": 2, "torch_threads": 2, "device": "cpu"},
        "dataset": {"name": "synthderm", "hash": DATASET_HASH, "n_images": 2000},
        "split": {"path": "splits/synthderm.csv", "hash": SPLIT_HASH},
        "timings": {"total_s": 1.0},
        "jobs": jobs_index,
    }
    if len(seeds) > 1:  # the method-level file the runner pools from the seeds
        for method in methods:
            pooled = pool_entries([per_seed[seed][method]["metrics"] for seed in seeds], alpha=0.05)
            record = {**per_seed[seeds[0]][method], "seeds": list(seeds), "n_seeds": len(seeds), "metrics": pooled}
            (run_dir / method / "metrics.json").write_text(json.dumps(record, indent=1))
    (run_dir / "run.json").write_text(json.dumps(run, indent=1))
    (run_dir / "comparisons.json").write_text(json.dumps(_comparisons(per_seed), indent=1))
    return run_dir


def edit_json(path: Path, change) -> None:
    """Load a JSON file, let `change(data)` modify it in place, write it back."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=1))


def write_cards(registry_dir: Path) -> Path:
    """Two method cards with paper claims, in the registry card shape."""
    registry_dir.mkdir(parents=True, exist_ok=True)
    (registry_dir / "msfa.yaml").write_text(
        "name: msfa\ntask: multiclass\n"
        "paper:\n  reference: Kohli et al., lightweight multi-scale framework\n"
        "  protocol: {dataset: HAM10000, split: random image-level 80/20, input_size: 224}\n"
        "claims:\n  accuracy: 0.788\n  f1_weighted: 0.79\n  params_m: 11.5\n  latency.ms_p50: 4.3\n"
        "profiles:\n  quick: {input_size: 64}\n  paper: {input_size: 224}\n")
    (registry_dir / "recall_ensemble.yaml").write_text(
        "name: recall_ensemble\ntask: binary\npaper: Rumale et al., recall-oriented framework\n"
        "claims:\n  binary.auc: 0.926\n  binary.sensitivity: {value: 0.879, note: at t=0.46}\n"
        "  recall_at_t: not a number\n")
    return registry_dir
