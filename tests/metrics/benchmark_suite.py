"""Time the full metric suite against a naive loop (not a test: run it by hand).

    python tests/metrics/benchmark_suite.py [--repeats 3] [--naive-resamples 20]

The suite: every metric of a 7-class method (7-class, binary, calibration), 1,000 lesion-clustered
resamples with BCa (plus one jackknife row per lesion), subgroups over 3 attributes, on 2,000
predictions. The naive loop draws the same kind of resample and calls scikit-learn once per metric
per resample (percentile CIs, so no jackknife); it is timed on a few resamples and scaled to 1,000.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn import metrics as sk

from benchbox.labels import MALIGNANT_INDICES
from benchbox.metrics import evaluate, load_config

N_IMAGES, N_LESIONS, N_RESAMPLES = 2000, 1500, 1000
PRIORS = [0.033, 0.051, 0.11, 0.011, 0.111, 0.669, 0.015]  # HAM10000 class shares


def dataset(seed: int = 0):
    rng = np.random.default_rng(seed)
    lesions = np.sort(np.r_[np.arange(N_LESIONS), rng.integers(0, N_LESIONS, N_IMAGES - N_LESIONS)])
    y = rng.choice(7, size=N_LESIONS, p=PRIORS)[lesions]
    logits = rng.normal(size=(N_IMAGES, 7))
    logits[np.arange(N_IMAGES), y] += 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    attributes = {
        "ita_category": rng.choice(["very_light", "light", "intermediate", "tan", "brown", "dark"], N_IMAGES),
        "sex": rng.choice(["male", "female", "unknown"], N_IMAGES, p=[0.52, 0.45, 0.03]),
        "age_band": rng.choice(["0-29", "30-44", "45-59", "60-74", "75+"], N_IMAGES),
    }
    return y, proba, lesions.astype(str), attributes


def naive_metrics(y, proba, attributes, threshold=0.5):
    """The same metrics as the suite, one scikit-learn call each."""
    labels = list(range(7))
    pred = proba.argmax(axis=1)
    malignant = np.isin(y, MALIGNANT_INDICES).astype(int)
    score = proba[:, list(MALIGNANT_INDICES)].sum(axis=1)
    flagged = (score >= threshold).astype(int)
    out = [
        sk.accuracy_score(y, pred), sk.balanced_accuracy_score(y, pred), sk.matthews_corrcoef(y, pred),
        sk.f1_score(y, pred, labels=labels, average="macro", zero_division=np.nan),
        sk.f1_score(y, pred, labels=labels, average="weighted", zero_division=np.nan),
        sk.precision_recall_fscore_support(y, pred, labels=labels, zero_division=np.nan),
        sk.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels),
        sk.roc_auc_score(y, proba, multi_class="ovr", average="weighted", labels=labels),
        [sk.roc_auc_score(y == k, proba[:, k]) for k in labels],
        [sk.average_precision_score(y == k, proba[:, k]) for k in labels],
        sk.brier_score_loss(y, proba, labels=labels), sk.log_loss(y, proba, labels=labels),
        sk.roc_auc_score(malignant, score), sk.average_precision_score(malignant, score),
        sk.recall_score(malignant, flagged), sk.recall_score(1 - malignant, 1 - flagged),
        sk.precision_score(malignant, flagged), sk.f1_score(malignant, flagged), sk.accuracy_score(malignant, flagged),
        sk.roc_curve(malignant, score), sk.roc_auc_score(1 - malignant, -score, max_fpr=0.2),
        sk.brier_score_loss(malignant, score), sk.log_loss(malignant, score, labels=[0, 1]),
    ]
    for values in attributes.values():
        for group in np.unique(values):
            for mask in (values == group, values != group):
                out += [sk.balanced_accuracy_score(y[mask], pred[mask]), sk.matthews_corrcoef(y[mask], pred[mask]),
                        sk.roc_auc_score(malignant[mask], score[mask]), sk.recall_score(malignant[mask], flagged[mask]),
                        sk.recall_score(1 - malignant[mask], 1 - flagged[mask])]
    return out


def naive_seconds_per_resample(y, proba, lesions, attributes, n_resamples: int) -> float:
    rng = np.random.default_rng(0)
    unique, index = np.unique(lesions, return_inverse=True)
    members = [np.flatnonzero(index == g) for g in range(len(unique))]
    start = time.perf_counter()
    for _ in range(n_resamples):
        drawn = np.concatenate([members[g] for g in rng.integers(0, len(unique), len(unique))])
        naive_metrics(y[drawn], proba[drawn], {k: v[drawn] for k, v in attributes.items()})
    return (time.perf_counter() - start) / n_resamples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-resamples", type=int, default=20)
    args = parser.parse_args()
    y, proba, lesions, attributes = dataset()
    config = load_config()
    assert config.bootstrap.n_resamples == N_RESAMPLES
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = evaluate("multiclass", y, proba, lesions, attributes, config=config)
        times.append(time.perf_counter() - start)
    print(f"suite: {len(result)} metrics, {N_RESAMPLES} resamples + {N_LESIONS} jackknife rows, "
          f"runs {', '.join(f'{t:.2f}' for t in times)} s, best {min(times):.2f} s")
    per_resample = naive_seconds_per_resample(y, proba, lesions, attributes, args.naive_resamples)
    naive = per_resample * N_RESAMPLES
    print(f"naive loop: {per_resample * 1e3:.0f} ms per resample ({args.naive_resamples} timed) "
          f"-> {naive:.0f} s for {N_RESAMPLES}; ratio {naive / min(times):.0f}x")


if __name__ == "__main__":
    main()
