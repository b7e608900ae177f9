"""Coverage of the seed-aware interval against a planted training-seed effect (seeds.py).

Each simulated dataset has lesions of varying difficulty (shared by every seed: the same test
set) and S = 3 training seeds, each with its own planted effect on the chance of a correct
answer. The truth is the expected accuracy of a freshly trained model on a fresh lesion
population. A lesion bootstrap of one seed misses the seed effect and under-covers; the
seed-aware interval should cover at the nominal 95 %.
"""

import numpy as np
import pytest
from scipy.special import expit

from benchbox.metrics.suite import evaluate, evaluate_seeds

N_DATASETS = 1000
N_LESIONS = 150
N_SEEDS = 3
BASE_LOGIT = 1.2  # accuracy about 0.75
LESION_SD = 1.0  # lesion difficulty
SEED_SD = 0.25  # planted training-seed effect on the logit: accuracy sd about 0.04 between seeds


def true_accuracy() -> float:
    rng = np.random.default_rng(12345)
    draws = 4_000_000
    return float(expit(BASE_LOGIT + SEED_SD * rng.standard_normal(draws) + LESION_SD * rng.standard_normal(draws)).mean())


def simulate(rng: np.random.Generator):
    """Labels, lesion ids and per-seed binary probabilities whose 0.5-threshold accuracy carries the planted effects."""
    images_per_lesion = rng.choice([1, 2, 3], size=N_LESIONS, p=[0.6, 0.3, 0.1])
    lesion = np.repeat(np.arange(N_LESIONS), images_per_lesion)
    difficulty = LESION_SD * rng.standard_normal(N_LESIONS)[lesion]
    y_true = rng.integers(0, 2, len(lesion))
    probas = []
    for effect in SEED_SD * rng.standard_normal(N_SEEDS):
        correct = rng.random(len(lesion)) < expit(BASE_LOGIT + effect + difficulty)
        p_malignant = np.where(correct == (y_true == 1), 0.8, 0.2)
        probas.append(np.stack([1 - p_malignant, p_malignant], axis=1))
    return y_true, lesion.astype(str), probas


@pytest.mark.slow
def test_seed_aware_interval_covers_planted_seed_effect_and_lesion_only_does_not():
    truth = true_accuracy()
    rng = np.random.default_rng(2026)
    covered_seed_aware = covered_lesion_only = 0
    for _ in range(N_DATASETS):
        y_true, lesions, probas = simulate(rng)
        pooled = evaluate_seeds("binary", y_true, probas, lesions, thresholds=[0.5] * N_SEEDS,
                                metrics=["binary.accuracy"])["binary.accuracy"]
        single = evaluate("binary", y_true, probas[0], lesions, threshold=0.5, metrics=["binary.accuracy"])["binary.accuracy"]
        covered_seed_aware += pooled["ci_low"] <= truth <= pooled["ci_high"]
        covered_lesion_only += single["ci_low"] <= truth <= single["ci_high"]
        assert pooled["n_seeds"] == N_SEEDS and len(pooled["per_seed"]) == N_SEEDS
        assert pooled["ci_method"].startswith("seed+lesion")
    seed_aware, lesion_only = covered_seed_aware / N_DATASETS, covered_lesion_only / N_DATASETS
    print(f"coverage over {N_DATASETS} datasets: seed-aware {seed_aware:.3f}, lesion-only {lesion_only:.3f}")
    assert 0.92 <= seed_aware <= 0.98  # 95 % +- 3
    assert lesion_only < 0.90
