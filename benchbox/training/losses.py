"""Losses torch lacks. (Weighted, label-smoothed cross-entropy is torch's own `nn.CrossEntropyLoss`.)"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al. 2017): mean over the batch of -w_y (1 - p_y)^gamma log p_y.

    Down-weights examples the model already gets right, so the many easy nevi stop dominating
    the gradient. `weight` (per class, optional) is the alpha term. Unlike torch's weighted
    cross-entropy, the batch mean divides by the batch size, not by the summed weights, as
    in the paper.
    """

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1).gather(1, target.view(-1, 1)).squeeze(1)
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.weight is not None:
            loss = loss * self.weight[target]
        return loss.mean()
