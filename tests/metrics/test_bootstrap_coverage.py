"""Coverage simulation: lesion-clustered CIs cover a known AUC at the nominal rate; i.i.d. image
resampling, on the same data, under-covers because images of one lesion are correlated."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from benchbox.metrics import evaluate

N_DATASETS = 300
N_LESIONS = 120
SEPARATION, LESION_SD, IMAGE_SD = 1.2, 1.0, 0.5  # within-lesion correlation of scores: 0.8


def simulated_dataset(rng):
    """2-4 images per lesion; a lesion's images share its label and its random effect."""
    sizes = rng.integers(2, 5, N_LESIONS)
    lesion = np.repeat(np.arange(N_LESIONS), sizes)
    malignant = (rng.random(N_LESIONS) < 0.35).astype(int)[lesion]
    score = SEPARATION * malignant + rng.normal(0, LESION_SD, N_LESIONS)[lesion] + rng.normal(0, IMAGE_SD, len(lesion))
    p = 1 / (1 + np.exp(-score))
    return malignant, np.c_[1 - p, p], lesion


def test_clustered_ci_covers_the_true_auc_and_iid_undercovers(make_config):
    # Any malignant and benign image come from different lesions, so P(score_pos > score_neg) is
    # Phi(separation / sqrt(2 (lesion_sd^2 + image_sd^2))): the AUC every dataset estimates.
    truth = norm.cdf(SEPARATION / np.sqrt(2 * (LESION_SD**2 + IMAGE_SD**2)))
    config = make_config(1000, "bca", seed=0)
    rng = np.random.default_rng(2024)
    covered = {"clustered": 0, "iid": 0}
    for _ in range(N_DATASETS):
        y, proba, lesion = simulated_dataset(rng)
        for kind, clusters in (("clustered", lesion), ("iid", np.arange(len(y)))):
            auc = evaluate("binary", y, proba, clusters, config=config, metrics=["binary.auc"])["binary.auc"]
            assert auc["ci_method"] == "bca"
            covered[kind] += auc["ci_low"] <= truth <= auc["ci_high"]
    rates = {kind: round(int(count) / N_DATASETS, 4) for kind, count in covered.items()}
    print(f"\n95% CI coverage of the true AUC {truth:.4f} over {N_DATASETS} datasets: {rates}")
    assert 0.91 <= rates["clustered"] <= 0.99, rates
    assert rates["iid"] < 0.88, rates
