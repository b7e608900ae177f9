"""PNG figures for the report, drawn with matplotlib's object API (no pyplot, so no global
backend or open-figure state): ROC curves, reliability diagrams, confusion matrices,
subgroup-gap forest plots and saliency grids. Each function returns the path it wrote, or
None when the run has nothing to draw."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import roc_auc_score, roc_curve

from ..labels import BINARY_CLASSES, MALIGNANT_CLASSES
from .boards import BASELINE_EXPLAINER
from .runfolder import Job, Run
from .subgroup_tables import gap_is_significant, parse_subgroups

DPI = 110
RELIABILITY_BINS = 15
SALIENCY_IMAGES = 4
PALETTE = colormaps["tab10"].colors


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def test_predictions(job: Job) -> tuple[pd.DataFrame, np.ndarray]:
    """The job's test-split rows and their true labels in the job's own label space: the 7
    class names of predictions.csv for 7-class methods, benign/malignant for binary ones."""
    frame = job.predictions()
    frame = frame[frame["split"] == "test"].reset_index(drop=True)
    truth = frame["y_true"].astype(str).to_numpy()
    if job.task == "binary":
        truth = np.where(is_malignant(truth), "malignant", "benign")
    return frame, truth


def is_malignant(truth: np.ndarray) -> np.ndarray:
    """Malignant (mel, bcc, akiec) for 7-class names; also accepts binary names."""
    return np.isin(truth, [*MALIGNANT_CLASSES, "malignant"])


def _roc_axes(figure: Figure, title: str):
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="chance")
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity (false positive rate)",
             ylabel="sensitivity (true positive rate)", title=title, aspect="equal")
    axes.grid(alpha=0.3)
    return axes


def _seed_note(run: Run) -> str:
    return f" (curves: seed {run.seeds[0]})" if len(run.seeds) > 1 else ""


def _curve_label(run: Run, method: str, name: str, curve_auc: float, metric: str) -> str:
    """The legend entry: the AUC of the curve drawn (the first seed's), and with several seeds the
    board's seed mean beside it, so the number next to a curve is that curve's."""
    board = run.method_metrics(method).get(metric)
    if len(run.seeds) == 1 or not board:
        return f"{method} ({name} {curve_auc:.3f})"
    return f"{method} ({name} {curve_auc:.3f}; {len(run.seeds)}-seed mean {board.value:.3f})"


def roc_binary(run: Run, methods: list[str], path: Path) -> Path | None:
    """Malignant-vs-benign ROC of every method from p_malignant on the test split."""
    if not methods:
        return None
    figure = Figure(figsize=(6.4, 6.4))
    axes = _roc_axes(figure, "Binary board: malignant vs benign, test split" + _seed_note(run))
    for i, method in enumerate(methods):
        job = run.done_jobs(method)[0]
        frame, truth = test_predictions(job)
        positives, scores = is_malignant(truth), frame["p_malignant"].to_numpy()
        fpr, tpr, _ = roc_curve(positives, scores)
        label = _curve_label(run, method, "AUC", roc_auc_score(positives, scores), "binary.auc")
        axes.plot(fpr, tpr, color=PALETTE[i % len(PALETTE)], linewidth=1.8, label=label)
    axes.legend(loc="lower right", fontsize=8)
    return _save(figure, path)


def roc_multiclass(run: Run, methods: list[str], path: Path) -> Path | None:
    """Macro-averaged one-vs-rest ROC per 7-class method: the mean of the per-class curves on a
    common false-positive grid (classes absent from the test split are skipped)."""
    if not methods:
        return None
    grid = np.linspace(0, 1, 201)
    figure = Figure(figsize=(6.4, 6.4))
    axes = _roc_axes(figure, "7-class board: macro-average one-vs-rest ROC, test split"
                     + _seed_note(run))
    for i, method in enumerate(methods):
        job = run.done_jobs(method)[0]
        frame, truth = test_predictions(job)
        curves, aucs = [], []
        for name in job.classes:
            positives = truth == name
            if positives.all() or not positives.any():
                continue
            fpr, tpr, _ = roc_curve(positives, frame[f"p_{name}"].to_numpy())
            curves.append(np.interp(grid, fpr, tpr))
            aucs.append(roc_auc_score(positives, frame[f"p_{name}"].to_numpy()))
        label = _curve_label(run, method, "macro AUC", float(np.mean(aucs)), "auc_macro")
        axes.plot(grid, np.mean(curves, axis=0), color=PALETTE[i % len(PALETTE)], linewidth=1.8,
                  label=label)
    axes.legend(loc="lower right", fontsize=8)
    return _save(figure, path)


def _grid(count: int, columns: int, size: float, extra_height: float = 0.0) -> tuple[Figure, list]:
    rows = math.ceil(count / columns)
    columns = min(columns, count)
    figure = Figure(figsize=(size * columns, (size + extra_height) * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for unused in axes[count:]:
        unused.set_visible(False)
    return figure, list(axes[:count])


def reliability(run: Run, methods: list[str], path: Path) -> Path | None:
    """Top-label reliability diagram per method (15 equal-width confidence bins): accuracy per
    bin against the diagonal, with the share of test images per bin."""
    if not methods:
        return None
    figure, all_axes = _grid(len(methods), 4, 3.2)
    edges = np.linspace(0, 1, RELIABILITY_BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    for method, axes in zip(methods, all_axes, strict=True):
        job = run.done_jobs(method)[0]
        frame, truth = test_predictions(job)
        probabilities = frame[[f"p_{c}" for c in job.classes]].to_numpy()
        confidence = probabilities.max(axis=1)
        correct = np.asarray(job.classes)[probabilities.argmax(axis=1)] == truth
        bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, RELIABILITY_BINS - 1)
        counts = np.bincount(bins, minlength=RELIABILITY_BINS)
        filled = counts > 0
        accuracy = np.bincount(bins, weights=correct, minlength=RELIABILITY_BINS)[filled] / counts[filled]
        mean_confidence = np.bincount(bins, weights=confidence, minlength=RELIABILITY_BINS)[filled] / counts[filled]
        width = 1 / RELIABILITY_BINS
        axes.bar(centres[filled], accuracy, width=width, color="tab:blue", alpha=0.85,
                 edgecolor="white", label="accuracy")
        axes.bar(centres[filled], np.abs(mean_confidence - accuracy), bottom=np.minimum(accuracy, mean_confidence),
                 width=width, facecolor="none", edgecolor="tab:red", hatch="///", linewidth=0.8,
                 label="gap to mean confidence")
        axes.plot([0, 1], [0, 1], color="0.3", linestyle="--", linewidth=1)
        axes.step(edges, np.append(counts / counts.sum(), 0), where="post", color="black",
                  linewidth=1.2, label="share of images")
        axes.set(xlim=(0, 1), ylim=(0, 1), title=f"{method} ({job.task}, n={len(truth)})",
                 xlabel="confidence (top class)", ylabel="accuracy")
        axes.title.set_fontsize(9)
    all_axes[0].legend(loc="upper left", fontsize=7)
    return _save(figure, path)


def confusion_counts(job: Job) -> tuple[np.ndarray, list[str], str]:
    """metrics.json's matrix (7-class methods); for binary methods, the test split at the job's
    operating threshold from metrics.json (0.5 when none is recorded)."""
    if job.confusion_matrix is not None:
        return job.confusion_matrix, job.classes, ""
    frame, truth = test_predictions(job)
    threshold = 0.5 if job.threshold is None else job.threshold
    predicted = np.where(frame["p_malignant"].to_numpy() >= threshold, "malignant", "benign")
    labels = list(BINARY_CLASSES)
    return sk_confusion_matrix(truth, predicted, labels=labels), labels, f", threshold {threshold:.2f}"


def confusion(run: Run, methods: list[str], path: Path) -> Path | None:
    """Confusion matrix per method: counts, coloured by row share (recall)."""
    if not methods:
        return None
    figure, all_axes = _grid(len(methods), 3, 4.2)
    for method, axes in zip(methods, all_axes, strict=True):
        job = run.done_jobs(method)[0]
        matrix, labels, note = confusion_counts(job)
        totals = matrix.sum(axis=1, keepdims=True)
        share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
        axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (row, column), count in np.ndenumerate(matrix):
            axes.text(column, row, str(count), ha="center", va="center", fontsize=8,
                      color="white" if share[row, column] > 0.55 else "black")
        ticks = np.arange(len(labels))
        axes.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=8)
        axes.set_yticks(ticks, labels, fontsize=8)
        axes.set(xlabel="predicted", ylabel="true", title=f"{method} (seed {job.seed}{note})")
    figure.suptitle("Test-split counts; colour = share of the true class (row-normalised)", fontsize=10)
    return _save(figure, path)


def forest(run: Run, attribute: str, metric: str, path: Path) -> Path | None:
    """Gap of each group to the rest, with 95% CIs, one colour per method (circles; diamonds below
    them: the source-adjusted gap where the run has it); filled markers where the CI excludes 0,
    "NaN" where the gap is undefined."""
    entries = {}
    for method in run.methods:
        result = parse_subgroups(run.method_metrics(method)).get((attribute, metric))
        if result is not None and result.gaps:
            entries[method] = result
    if not entries:
        return None
    adjusted = any(result.adjusted for result in entries.values())
    groups = list(dict.fromkeys(g for result in entries.values() for g in result.gaps))
    height = 0.8 / len(entries)
    figure = Figure(figsize=(7.5, 1.0 + 0.28 * len(groups) * len(entries) * (1 + adjusted) + 0.3 * len(groups)),
                    layout="constrained")
    axes = figure.add_subplot()
    axes.axvline(0, color="0.3", linewidth=1)
    for i, result in enumerate(entries.values()):
        colour = PALETTE[i % len(PALETTE)]
        for row, group in enumerate(groups):
            y = row - 0.4 + height * (i + 0.5)
            kinds = [(result.gaps, "o", y - height / 4 if adjusted else y)]
            if adjusted:
                kinds.append((result.adjusted, "D", y + height / 4))
            for gaps, marker, at in kinds:
                _gap_marker(axes, gaps.get(group), at, marker, colour)
    for boundary in np.arange(len(groups) - 1) + 0.5:
        axes.axhline(boundary, color="0.85", linewidth=0.8)
    axes.set_yticks(range(len(groups)), groups)
    axes.set_ylim(len(groups) - 0.5, -0.5)
    axes.set(xlabel=f"{metric}: group minus rest (95% CI; filled = CI excludes 0)",
             title=f"Subgroup gaps by {attribute}: {metric}")
    axes.grid(axis="x", alpha=0.3)
    handles = [axes.plot([], [], "o", color=PALETTE[i % len(PALETTE)], label=m)[0]
               for i, m in enumerate(entries)]
    if adjusted:
        handles += [axes.plot([], [], "o", color="0.4", markerfacecolor="white", label="raw gap")[0],
                    axes.plot([], [], "D", color="0.4", markerfacecolor="white", label="source-adjusted")[0]]
    axes.legend(handles=handles, fontsize=7, loc="best")
    return _save(figure, path)


def _gap_marker(axes, gap, y: float, marker: str, colour) -> None:
    """One gap with its CI at height y: filled when the CI excludes 0, "NaN" when undefined."""
    if gap is None:
        return
    if not math.isfinite(gap.value):
        axes.text(0, y, " NaN", color=colour, va="center", fontsize=7)
        return
    error = [[gap.value - gap.ci_low], [gap.ci_high - gap.value]] if gap.has_ci else None
    axes.errorbar(gap.value, y, xerr=error, fmt=marker, color=colour, capsize=2,
                  markersize=5, markerfacecolor=colour if gap_is_significant(gap) else "white")


def saliency_grid(job: Job, path: Path) -> Path | None:
    """First SALIENCY_IMAGES explained test images: the image, then each explainer's map
    (and the centred-Gaussian baseline) over it, the ground-truth mask as a contour."""
    if not job.explanations_path.exists():
        return None
    with np.load(job.explanations_path, allow_pickle=False) as data:
        images = data["images"][:SALIENCY_IMAGES]
        masks = data["masks"][:SALIENCY_IMAGES] if "masks" in data.files else None  # data without masks
        image_ids = [str(i) for i in data["image_ids"][:SALIENCY_IMAGES]]
        names = [k[len("map_"):] for k in data.files if k.startswith("map_")]
        names = [n for n in names if n != BASELINE_EXPLAINER] + (
            [BASELINE_EXPLAINER] if BASELINE_EXPLAINER in names else [])
        maps = {n: data[f"map_{n}"][:SALIENCY_IMAGES] for n in names}
    if len(images) == 0:
        return None
    columns = 1 + len(names)
    figure = Figure(figsize=(2.3 * columns, 2.4 * len(images)), layout="constrained")
    grid = figure.subplots(len(images), columns, squeeze=False)
    for row in range(len(images)):
        panels = [("image", None), *[(n, maps[n][row]) for n in names]]
        for column, (name, saliency) in enumerate(panels):
            axes = grid[row, column]
            axes.imshow(images[row])
            if saliency is not None:
                colormap_scale = axes.imshow(saliency, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            if masks is not None and masks[row].any():
                axes.contour(masks[row], levels=[0.5], colors="white", linewidths=1.2)
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                label = f"{name} (baseline)" if name == BASELINE_EXPLAINER else name
                axes.set_title(label, fontsize=9)
            if column == 0:
                axes.set_ylabel(image_ids[row], fontsize=7)
    figure.colorbar(colormap_scale, ax=grid[:, -1].tolist(), shrink=0.6, label="saliency")
    figure.suptitle(f"{job.method} (seed {job.seed}): maps over the image, "
                    + ("white contour = ground-truth lesion mask" if masks is not None else "no lesion masks in this data"), fontsize=9)
    return _save(figure, path)
