"""Power and false-positive rate of the subgroup machinery on simulated predictions with a planted
skin-tone gap: how often a real AUC gap is flagged, and how often no gap is.

Statistics alone (no model): binary predictions on 1-2 images per lesion, three skin-tone groups
drawn per lesion, and "dark" given a weaker score-label separation (a lower AUC) by `planted_drop`
on the logit scale. Each replicate runs the same code the boards do: the worst group's gap with
its lesion-bootstrap interval (`metrics.suite.evaluate`), and the lesion-level permutation test
of heterogeneity (`metrics.subgroups.heterogeneity_entries`).
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import numpy as np
from tqdm.auto import tqdm

# The planted drop whose flag rate is the power. 1.4 on the logit scale is a dark-group AUC
# gap of about 0.10 (flag_rates reports it), the size of the published skin-tone gaps.
PLANTED_DROP = 1.4
N_LESIONS = 450


def simulate_skin_tones(rng: np.random.Generator, planted_drop: float, n_lesions: int = N_LESIONS):
    """(y 0/1, proba n x 2, lesion ids, tone) for one replicate."""
    per_lesion = rng.integers(1, 3, n_lesions)
    lesion = np.repeat(np.arange(n_lesions), per_lesion)
    tone = rng.choice(["light", "intermediate", "dark"], n_lesions, p=[0.5, 0.3, 0.2])[lesion]
    y = (rng.random(n_lesions) < 0.3).astype(int)[lesion]
    separation = np.where(tone == "dark", 2.2 - planted_drop, 2.2)
    logit = -1.1 + separation * y + rng.normal(size=len(y)) + 0.5 * rng.normal(size=n_lesions)[lesion]
    score = 1 / (1 + np.exp(-logit))
    return y, np.c_[1 - score, score], np.array([f"L{i}" for i in lesion]), tone


def flag_rates(planted_drop: float, replicates: int, seed: int, n_resamples: int = 200,
               progress: bool = False) -> dict:
    """Share of replicates whose dark-group gap is flagged, by interval and by test, and the true gap.

    {"ci": worst_gap CI excludes 0, "test": heterogeneity p < 0.05, "auc_gap": mean dark-group AUC
    gap, "replicates"}. n_resamples: lesion-bootstrap draws per replicate (the boards use more; the
    rates are of the same procedure)."""
    from ..metrics.config import load_config
    from ..metrics.subgroups import heterogeneity_entries, prediction_errors
    from ..metrics.suite import evaluate, prepare

    config = load_config()
    config = dataclasses.replace(
        config, bootstrap=dataclasses.replace(config.bootstrap, n_resamples=n_resamples),
        boards=MappingProxyType({k: dataclasses.replace(b, subgroup_metrics=("binary.auc",))
                                 for k, b in config.boards.items()}))
    rng = np.random.default_rng(seed)
    by_ci, by_test, auc_gap = [], [], []
    for r in tqdm(range(replicates), desc=f"subgroup power (drop {planted_drop})", disable=not progress, leave=False):
        y, proba, lesions, tone = simulate_skin_tones(rng, planted_drop)
        result = evaluate("binary", y, proba, lesions, {"tone": tone}, config=config, metrics=["binary.auc"])
        worst = result["subgroup.tone.binary.auc.worst_gap"]
        by_ci.append(worst["ci_low"] > 0 or worst["ci_high"] < 0)
        errors = prediction_errors(prepare("binary", y, proba))
        p = heterogeneity_entries({"tone": tone}, errors, lesions, 1000, r, 30)["subgroup.tone.binary.heterogeneity_p"]
        by_test.append(p["value"] < 0.05)
        auc_gap.append(result["subgroup.tone.binary.auc.gap.dark"]["value"])
    return {"ci": float(np.mean(by_ci)), "test": float(np.mean(by_test)), "auc_gap": float(np.mean(auc_gap)),
            "replicates": replicates}
