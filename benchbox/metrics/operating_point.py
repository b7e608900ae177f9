"""Is a binary operating point degenerate?

The threshold is chosen on validation, never on test. When validation and test scores sit in
different ranges (another source, another camera, a model that drifted), that threshold can put
(nearly) every test image on one side: sensitivity 1.00 and specificity 0.00, or the reverse. Such
a row is no operating point at all, so the board and the run log flag it, with the two score
distributions that explain it.
"""

from __future__ import annotations

import numpy as np

# A sensitivity or specificity at or below this is a collapse to one class (the gate's
# `degenerate: [0.02, 0.98]` of metrics/gate.yaml uses the same bound).
DEGENERATE_BELOW = 0.02


def _spread(scores: np.ndarray) -> str:
    q10, q50, q90 = np.quantile(scores, [0.1, 0.5, 0.9])
    return f"median {q50:.2f} (10-90 %: {q10:.2f}-{q90:.2f})"


def degenerate_operating_point(val_scores, test_scores, test_malignant, threshold: float) -> str | None:
    """A sentence saying why the operating point collapsed, or None when it did not.

    `*_scores` are malignant scores; a test image is called malignant when its score >= threshold.
    Needs both classes in test (otherwise sensitivity or specificity is undefined, not degenerate).
    """
    test_scores = np.asarray(test_scores, dtype=np.float64)
    malignant = np.asarray(test_malignant).astype(bool)
    if not malignant.any() or malignant.all() or not np.isfinite(threshold):
        return None
    called = test_scores >= threshold
    sensitivity, specificity = called[malignant].mean(), (~called[~malignant]).mean()
    if min(sensitivity, specificity) > DEGENERATE_BELOW:
        return None
    side = "at or above" if sensitivity > specificity else "below"
    share = called.mean() if sensitivity > specificity else 1 - called.mean()
    val_scores = np.asarray(val_scores, dtype=np.float64)
    val_text = _spread(val_scores) if val_scores.size else "no validation scores"
    return (f"degenerate operating point: the validation threshold {threshold:.3f} puts {share:.0%} of test "
            f"images {side} it (sensitivity {sensitivity:.2f}, specificity {specificity:.2f}); malignant "
            f"score on validation {val_text}, on test {_spread(test_scores)}")
