"""colour_knn: k nearest neighbours on colour statistics, the classical hand-crafted dermoscopy baseline.

Why it is here: it is the harness's known-answer method for leakage. An image's colour statistics
(the skin's tone, the lesion's pigment, the site's light) are nearly those of its lesion's other
images, so on a split that puts siblings in train and test the nearest neighbour is the sibling and
the score is inflated; on a lesion-grouped split it is not. It trains in seconds, deterministically
(no training noise to confound the comparison), and has no network, so it offers no explainer.

Features: the 5th, 25th, 50th, 75th and 95th percentiles of R, G and B in the image centre (a disc
of a third of the side, where the lesion sits) and in the rest (mostly skin), standardised on the
training images; scikit-learn's distance-weighted k-NN votes, smoothed so no class has probability 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

from ..errors import BenchboxError
from ..labels import CLASSES
from .base import Method

PERCENTILES = (5, 25, 50, 75, 95)
CENTRE_RADIUS = 1 / 3  # of the image side
SMOOTHING = 0.01  # probability mass spread evenly over the classes


def colour_features(images: np.ndarray) -> np.ndarray:
    """N x 30: RGB percentiles of the centre disc and of the rest of each image."""
    images = np.asarray(images)
    size = images.shape[1]
    yy, xx = np.mgrid[:size, :size]
    centre = np.hypot(yy - (size - 1) / 2, xx - (size - 1) / 2) < CENTRE_RADIUS * size
    parts = [images[:, centre, :], images[:, ~centre, :]]
    return np.concatenate([np.percentile(p, PERCENTILES, axis=1).transpose(1, 0, 2).reshape(len(images), -1)
                           for p in parts], axis=1).astype(np.float64)


class ColourKNN(Method):
    def __init__(self):
        self.k = 5
        self.mean = self.scale = self.features = self.labels = None

    def fit(self, train, val, ctx) -> None:
        self.k = int(ctx.settings.get("k", 5))
        features = colour_features(train.images)
        self.mean, self.scale = features.mean(axis=0), features.std(axis=0) + 1e-9
        self.features, self.labels = (features - self.mean) / self.scale, np.asarray(train.labels, dtype=np.int64)

    def _classifier(self) -> KNeighborsClassifier:
        if self.features is None:
            raise BenchboxError("colour_knn: predict before fit or load; train it first.")
        return KNeighborsClassifier(n_neighbors=min(self.k, len(self.labels)), weights="distance").fit(
            self.features, self.labels)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        classifier = self._classifier()
        votes = classifier.predict_proba((colour_features(images) - self.mean) / self.scale)
        proba = np.zeros((len(votes), len(CLASSES)))
        proba[:, classifier.classes_] = votes
        return (1 - SMOOTHING) * proba + SMOOTHING / len(CLASSES)

    def explain(self, images, targets, explainer):
        raise BenchboxError(f"colour_knn has no network to explain, so no explainer {explainer!r}.")

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "neighbours.npz", mean=self.mean, scale=self.scale, features=self.features, labels=self.labels)
        (directory / "settings.json").write_text(json.dumps({"k": self.k}))

    def load(self, directory: Path) -> None:
        with np.load(directory / "neighbours.npz", allow_pickle=False) as data:
            self.mean, self.scale, self.features, self.labels = (data[k] for k in ("mean", "scale", "features", "labels"))
        self.k = int(json.loads((directory / "settings.json").read_text())["k"])
