from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchbox.explain.maps import normalise_maps
from benchbox.explain.smoothgrad import smoothgrad_maps


def test_a_linear_model_gives_its_weight_magnitudes_whatever_the_noise():
    # Input gradients of a linear model are its weights: noise cannot change them.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 2))
    inputs = torch.randn(3, 3, 4, 5)
    targets = np.array([1, 0, 1])
    out = smoothgrad_maps(model, inputs, targets, n_samples=4, noise_level=0.3)
    weights = model[1].weight.detach().numpy().reshape(2, 3, 4, 5)
    expected = normalise_maps(np.abs(weights[targets]).max(axis=1))
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_squared_input_gives_twice_the_mean_absolute_noisy_input():
    # score = sum x^2 over channel 0 -> |grad| = 2 |x + noise| on channel 0, 0 elsewhere.
    class SquareSum(nn.Module):
        def forward(self, x):
            return torch.stack([(x[:, 0] ** 2).sum(dim=(1, 2))] * 2, dim=1)

    inputs = torch.linspace(-1, 1, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    out = smoothgrad_maps(SquareSum(), inputs, np.array([0, 1]), n_samples=3, noise_level=0.1, seed=5, batch_size=4)
    rng = np.random.default_rng(5)
    noise = rng.standard_normal((6, 3, 4, 4), dtype=np.float32).reshape(2, 3, 3, 4, 4)
    x = inputs.numpy()
    spans = (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))[:, None, None, None, None]
    grads = 2 * np.abs(x[:, None, 0] + 0.1 * spans[:, :, 0] * noise[:, :, 0])
    np.testing.assert_allclose(out, normalise_maps(grads.mean(axis=1)), atol=1e-5)


def test_seeded_and_independent_of_batch_size():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    inputs = torch.randn(4, 3, 8, 8)
    targets = np.array([0, 1, 2, 0])
    a = smoothgrad_maps(model, inputs, targets, n_samples=5, seed=3, batch_size=64)
    b = smoothgrad_maps(model, inputs, targets, n_samples=5, seed=3, batch_size=3)
    c = smoothgrad_maps(model, inputs, targets, n_samples=5, seed=4)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not np.allclose(a, c)
    assert a.shape == (4, 8, 8) and a.min() >= 0 and np.allclose(a.max(axis=(1, 2)), 1)
    assert all(p.grad is None for p in model.parameters())
