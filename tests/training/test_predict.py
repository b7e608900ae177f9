from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchbox.training.data import model_inputs
from benchbox.training.predict import predict_probabilities


def test_predictions_average_softmax_over_networks_and_views():
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 7)) for _ in range(2)]
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    probs = predict_probabilities(nets, images, "cpu", batch_size=2, views=("identity", "hflip"))
    x = model_inputs(images, "cpu")
    with torch.no_grad():
        expected = sum(torch.softmax(net(v), 1) for net in nets for v in (x, x.flip(-1))) / 4
    np.testing.assert_allclose(probs, expected.double().numpy(), atol=1e-6)
    assert probs.dtype == np.float64 and np.abs(probs.sum(axis=1) - 1).max() < 1e-12


def test_unknown_views_are_refused():
    with pytest.raises(ValueError, match="choose from"):
        predict_probabilities([nn.Flatten()], np.zeros((1, 4, 4, 3), np.uint8), "cpu", views=("shear",))
