"""Hollow explanations: the model-parameter randomisation check (explain/randomisation.py) fails an
explainer planted to ignore the model and passes the method's own explainers where their maps
depend on the weights.

One method is trained on the profile's base data; its run scores every explainer's similarity
after full randomisation (`xai.<explainer>.mprt_spearman`, lesion-clustered CI). The planted
explainer returns the centred Gaussian for every image, whatever the weights: the check must flag it.
"""

from __future__ import annotations

import numpy as np

from ..errors import BenchboxError


def randomisation_rows(ctx) -> list:
    from ..explain.baseline import centred_gaussian_map
    from ..explain.randomisation import MPRT_THRESHOLD, model_randomisation_check
    from ..metrics.suite import evaluate_means
    from ..runner.run import execute
    from ..runner.store import read_json
    from .shortcut import trained_method
    from .validate import Row

    folder = ctx.out / "randomisation"
    config = ctx.run_config(ctx.settings["base_data"], folder)
    if execute(config, ctx.progress) != 0:
        raise BenchboxError(f"randomisation: the run failed; see {folder}/run.log")
    metrics = read_json(folder / ctx.method / "metrics.json")["metrics"]
    rows = []
    for explainer in dict.fromkeys(name.split(".")[1] for name in metrics if name.endswith(".mprt_spearman")):
        entry = metrics[f"xai.{explainer}.mprt_spearman"]
        ssim = metrics.get(f"xai.{explainer}.mprt_ssim", {})
        passed = bool(np.isfinite(entry["value"]) and entry["value"] <= MPRT_THRESHOLD)
        rows.append(Row("4 hollow explanations", f"{explainer} reads the trained {ctx.method}",
                        "Spearman of maps, trained vs every weight re-initialised (top first)",
                        entry["value"], entry["ci_low"], entry["ci_high"], f"mean ≤ {MPRT_THRESHOLD} (maps change)",
                        "pass" if passed else "fail", f"SSIM {ssim.get('value', np.nan):.3f}"))

    method, size = trained_method(config)
    n = ctx.settings["explain_n"]
    planted = np.broadcast_to(centred_gaussian_map(size, size), (n, size, size)).copy()  # whatever the image
    check = model_randomisation_check(method, lambda m: planted, networks=lambda m: m.networks(), seed=0)
    entry = evaluate_means({"xai.planted.mprt_spearman": check["spearman"]}, np.arange(n))[
        "xai.planted.mprt_spearman"]
    flagged = bool(entry["value"] > MPRT_THRESHOLD)
    rows.append(Row("4 hollow explanations", "planted explainer that ignores the model (the centred Gaussian)",
                    "Spearman of maps, trained vs every weight re-initialised (top first)",
                    entry["value"], entry["ci_low"], entry["ci_high"], f"mean > {MPRT_THRESHOLD} (flagged as failing)",
                    "pass" if flagged else "fail", f"{len(check['stages'])} stages: {', '.join(check['stages'])}"))
    return rows
