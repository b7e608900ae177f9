"""colour_knn against a hand computation of its features and an independent scikit-learn k-NN."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from benchbox.data.arrays import ImageSet
from benchbox.methods.base import RunContext
from benchbox.methods.colour_knn import colour_features
from benchbox.registry import method_cards


def _images(rng, n, size=12):
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_features_are_the_centre_and_border_percentiles_by_hand():
    rng = np.random.default_rng(0)
    image = _images(rng, 1)[0]
    yy, xx = np.mgrid[:12, :12]
    centre = np.hypot(yy - 5.5, xx - 5.5) < 4  # a third of 12 px
    expected = [np.percentile(image[region][:, c], q) for region in (centre, ~centre) for q in (5, 25, 50, 75, 95)
                for c in range(3)]
    # layout: region, then percentile, then channel
    assert colour_features(image[None])[0] == pytest.approx(expected, abs=1e-12)


def test_predictions_match_an_independent_knn_and_survive_save_and_load(tmp_path):
    rng = np.random.default_rng(1)
    train, test = _images(rng, 60), _images(rng, 9)
    labels = rng.integers(0, 7, 60)
    method = method_cards().get("colour_knn").create()
    ctx = RunContext(profile="quick", seed=0, device="cpu", settings={"k": 5})
    method.fit(ImageSet(np.arange(60).astype(str), train, labels, labels.astype(str)), None, ctx)
    proba = method.predict_proba(test)
    features = colour_features(train)
    mean, scale = features.mean(0), features.std(0) + 1e-9
    reference = KNeighborsClassifier(5, weights="distance").fit((features - mean) / scale, labels)
    votes = np.zeros((9, 7))
    votes[:, reference.classes_] = reference.predict_proba((colour_features(test) - mean) / scale)
    assert proba == pytest.approx(0.99 * votes + 0.01 / 7, abs=1e-12)
    assert proba.sum(axis=1) == pytest.approx(1.0) and proba.min() > 0
    method.save(tmp_path)
    loaded = method_cards().get("colour_knn").create()
    loaded.load(tmp_path)
    assert np.array_equal(loaded.predict_proba(test), proba)
