from __future__ import annotations

import numpy as np
import torch

from benchbox.training.losses import FocalLoss


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    logits = torch.randn(8, 7, generator=torch.Generator().manual_seed(0))
    target = torch.arange(8) % 7
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, target), torch.nn.functional.cross_entropy(logits, target))


def test_focal_loss_matches_a_hand_computation():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    target = torch.tensor([0, 2])
    weight = torch.tensor([0.5, 1.0, 2.0])
    p0 = np.exp(2) / (np.exp(2) + 2)  # true-class probabilities
    p1 = 1 / (np.e + 2)
    expected = (0.5 * -((1 - p0) ** 2) * np.log(p0) + 2.0 * -((1 - p1) ** 2) * np.log(p1)) / 2
    assert np.isclose(FocalLoss(gamma=2.0, weight=weight)(logits, target).item(), expected, rtol=1e-6)
