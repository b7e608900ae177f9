"""Shared fixtures for the metrics tests: random predictions and configs with few resamples."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchbox.metrics import load_config


def _random_multiclass(seed: int, n: int = 300, n_classes: int = 7, never_predicted: tuple[int, ...] = ()):
    """Labels, softmax probabilities with some signal, and lesion ids (1-3 images per lesion).

    Classes in `never_predicted` never win the arg-max.
    """
    rng = np.random.default_rng(seed)
    y = rng.choice(n_classes, size=n, p=np.r_[0.4, np.full(n_classes - 1, 0.6 / (n_classes - 1))])
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), y] += 1.2
    logits[:, list(never_predicted)] -= 20.0
    proba = np.exp(logits)
    proba /= proba.sum(axis=1, keepdims=True)
    lesions = np.repeat(np.arange(n), rng.integers(1, 4, size=n))[:n]
    return y, proba, np.array([f"L{i}" for i in lesions])


def _config(n_resamples: int, method: str = "bca", seed: int = 0):
    config = load_config()
    bootstrap = dataclasses.replace(config.bootstrap, n_resamples=n_resamples, method=method, seed=seed)
    return dataclasses.replace(config, bootstrap=bootstrap)


@pytest.fixture
def random_multiclass():
    """Factory: random_multiclass(seed, n=300, n_classes=7, never_predicted=()) -> (y, proba, lesions)."""
    return _random_multiclass


@pytest.fixture
def make_config():
    """Factory: make_config(n_resamples, method="bca", seed=0) -> the default suites with those bootstrap settings."""
    return _config
