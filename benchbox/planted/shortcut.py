"""Shortcuts: a method trained where an ink marker goes with malignancy learns the marker, and
benchbox measures it two ways.

synthderm is generated three times with the same lesions (only the artefacts differ):
`correlated` (the marker on 95% of malignant and 5% of benign images: a shortcut strong enough for a
few-epoch model to take), `counterfactual` (on 50% of
every class: the marker says nothing) and `clean` (the default 6% of every class). One method is
trained on correlated and one on clean, on the same lesion-grouped split. Measured:

* the drop of the primary metric from the correlated to the counterfactual test images (the same
  lesions, paired lesion-clustered interval): a shortcut model drops, the clean model does not;
* the share of explanation energy on the marker's pixels (synthderm's ink masks) on counterfactual
  test images that carry a marker, shortcut model minus clean model on the same images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..errors import BenchboxError
from ..labels import CLASSES, MALIGNANT_CLASSES, MALIGNANT_INDICES

INK_RATES = {
    "correlated": {c: (0.95 if c in MALIGNANT_CLASSES else 0.05) for c in CLASSES},
    "counterfactual": {c: 0.5 for c in CLASSES},
    "clean": None,  # the generator's class-independent default
}
# The marker's stroke, times synthderm's default (1.5-3 px at 128 px, 1 % of the image): a bold
# marker pen, 2.4 % of the image, still a thin arc at 48-64 px input.
INK_WIDTH = 3.0


def marker_energy_share(maps: np.ndarray, marker: np.ndarray) -> np.ndarray:
    """Per image, the share of the map's positive mass on the marker (maps and marker n x H x W;
    marker in [0, 1], the share of each pixel the marker covers). NaN for an all-zero map."""
    positive = np.clip(np.asarray(maps, dtype=np.float64), 0, None)
    total = positive.sum(axis=(1, 2))
    on_marker = (positive * np.asarray(marker, dtype=np.float64)).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, on_marker / total, np.nan)


def marker_masks(root: Path, image_ids, size: int) -> np.ndarray:
    """The ink masks of `image_ids` at the model's input size, as coverage in [0, 1] (area-resized)."""
    from ..data.synthderm import ink_mask_path

    masks = []
    for image_id in image_ids:
        path = ink_mask_path(root, image_id)
        if not path.is_file():
            raise BenchboxError(f"{path}: no ink mask for {image_id}; generate the dataset with artefact_masks=True.")
        with Image.open(path) as image:
            masks.append(np.asarray(image.convert("L").resize((size, size), Image.Resampling.BOX), dtype=np.float64) / 255)
    return np.stack(masks)


def trained_method(config):
    """The method of a finished single-method, single-seed run configuration, from the checkpoint
    cache (the run trained it; this loads the same fit)."""
    from ..runner.job import JobInputs, fit_or_load
    from ..runner.run import job_specs, metric_suites_sha256, validate

    checked = validate(config, progress=False)
    spec = job_specs(config, checked, config.evaluation(), metric_suites_sha256())[0]
    inputs = JobInputs(checked["dataset"], checked["split"].table, Path(config.out) / "reload", checked["device"], False)
    method, _ = fit_or_load(spec, checked["cards"][config.methods[0]], inputs)
    return method, spec.input_size


def shortcut_rows(ctx) -> list:
    from ..data.load import ensure_synthderm_variant, load_dataset
    from ..metrics.config import load_config
    from ..metrics.paired import MethodOutput, compare_all
    from ..runner.run import execute
    from .validate import interval_row, shared_split

    roots = {name: ensure_synthderm_variant(f"validate-ink-{name}", **ctx.synth("shortcut"),
                                            artefact_correlation=None if rates is None else {"ink": rates},
                                            artefact_masks=True, ink_width=INK_WIDTH)
             for name, rates in INK_RATES.items()}
    datasets = {name: load_dataset(f"synthderm:{root}", progress=ctx.progress) for name, root in roots.items()}
    folder = ctx.out / "shortcut"
    split_path = shared_split(datasets["correlated"], folder / "split.csv", progress=ctx.progress)

    models = {}
    for name in ("correlated", "clean"):
        config = ctx.run_config(f"synthderm:{roots[name]}", folder / f"trained_on_{name}", split=str(split_path),
                                check="shortcut")
        if execute(config, ctx.progress) != 0:
            raise BenchboxError(f"shortcut: the run trained on {name} data failed; see {config.out}/run.log")
        models[name] = trained_method(config)

    split = pd.read_csv(split_path, dtype=str)
    test = split.loc[split["split"] == "test", ["image_id", "group_id"]].sort_values("image_id")
    metrics_config = load_config()
    rows = []
    for trained_on, (method, size) in models.items():
        images = {name: datasets[name].image_set(test["image_id"], size, groups=test["group_id"], progress=False)
                  for name in ("correlated", "counterfactual")}
        labels = images["correlated"].labels
        y = labels if method.task == "multiclass" else np.isin(labels, MALIGNANT_INDICES).astype(np.int64)
        outputs = {name: MethodOutput(method.task, np.asarray(method.predict_proba(s.images), dtype=np.float64))
                   for name, s in images.items()}
        for board in metrics_config.boards.values():
            if method.task not in board.tasks:
                continue
            result = compare_all(board.primary, y, outputs, test["group_id"].to_numpy(), metrics_config)[0]
            planted = trained_on == "correlated"
            rows.append(interval_row(
                "3 shortcut: drop on counterfactual test", f"trained on {trained_on} data "
                + ("(marker on 95% of malignant, 5% of benign images)" if planted else "(marker independent of class)"),
                f"{board.primary} correlated − counterfactual test ({ctx.method})",
                {"value": result["diff"], "ci_low": result["ci_low"], "ci_high": result["ci_high"],
                 "reason": result.get("reason")},
                expect_effect=planted, sign=1,
                detail=f"{result['value_a']:.3f} → {result['value_b']:.3f} on the same {result['n']} test images"))
    rows.append(energy_row(ctx, models, datasets["counterfactual"], roots["counterfactual"], test))
    return rows


def energy_row(ctx, models: dict, dataset, root: Path, test: pd.DataFrame):
    """Shortcut-minus-clean share of explanation energy on the marker, on counterfactual test
    images with a marker (both models explain the same images, each its own decision)."""
    from ..data.synthderm import TRUTH_FILE
    from ..metrics.suite import evaluate_means
    from .validate import interval_row

    truth = pd.read_csv(Path(root) / TRUTH_FILE, dtype={"image_id": str}).set_index("image_id")
    inked = test[truth.loc[test["image_id"], "ink"].astype(str).str.lower().isin(["true", "1"]).to_numpy()]
    inked = inked.head(ctx.settings["explain_n"])
    if inked.empty:
        raise BenchboxError("shortcut: no counterfactual test image carries a marker to explain.")
    shares = {}
    explainer = None
    for trained_on, (method, size) in models.items():
        explainer = explainer or method.explainers[0]
        images = dataset.image_set(inked["image_id"], size, groups=inked["group_id"], progress=False)
        targets = method.predict_proba(images.images).argmax(axis=1)
        maps = method.explain(images.images, targets, explainer)
        shares[trained_on] = marker_energy_share(maps, marker_masks(root, inked["image_id"], size))
    name = f"xai.{explainer}.marker_energy_share"
    entries = evaluate_means({f"{name}_gain": shares["correlated"] - shares["clean"], name: shares["clean"],
                              f"{name}_shortcut": shares["correlated"]}, inked["group_id"].to_numpy())
    gain, clean, shortcut = entries[f"{name}_gain"], entries[name], entries[f"{name}_shortcut"]

    return interval_row(
        "3 shortcut: explanation energy on the marker", "trained on correlated vs clean data",
        f"{explainer} energy share on the marker, shortcut − clean model ({len(inked)} counterfactual images with a marker)",
        gain, expect_effect=True, sign=1,
        detail=f"shortcut {shortcut['value']:.3f} [{shortcut['ci_low']:.3f}, {shortcut['ci_high']:.3f}], "
               f"clean {clean['value']:.3f} [{clean['ci_low']:.3f}, {clean['ci_high']:.3f}]")
