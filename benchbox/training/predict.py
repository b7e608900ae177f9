"""Batched inference: softmax probabilities averaged over networks and test-time-augmentation views."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .data import model_inputs

# Exact, label-preserving views (dermoscopy has no orientation); "identity" alone means no TTA.
TTA_VIEWS = {
    "identity": lambda x: x,
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "rot90": lambda x: x.rot90(1, (-2, -1)),
    "rot180": lambda x: x.rot90(2, (-2, -1)),
    "rot270": lambda x: x.rot90(3, (-2, -1)),
}


def check_views(views: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    unknown = [v for v in views if v not in TTA_VIEWS]
    if unknown or not views:
        raise ValueError(f"test-time augmentation views {list(views)}: choose from {sorted(TTA_VIEWS)}")
    return tuple(views)


@torch.no_grad()
def predict_probabilities(
    networks: list[nn.Module],
    images: np.ndarray,
    device: str | torch.device,
    batch_size: int = 64,
    views: tuple[str, ...] = ("identity",),
) -> np.ndarray:
    """N x C float64 probabilities: the mean over networks and views of softmax(logits).

    Each network maps normalised N x 3 x H x W inputs to N x C logits. Averaging probabilities
    (not logits) is the usual ensemble and TTA rule. Rows are renormalised in float64 so they
    sum to 1 to machine precision.
    """
    views = check_views(views)
    for network in networks:
        network.eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        inputs = model_inputs(images[start : start + batch_size], device)
        total = 0
        for network in networks:
            for view in views:
                total = total + torch.softmax(network(TTA_VIEWS[view](inputs)).float(), dim=1)
        chunks.append((total / (len(networks) * len(views))).double().cpu().numpy())
    if not chunks:
        raise ValueError("predict_probabilities got no images")
    probs = np.concatenate(chunks)
    return probs / probs.sum(axis=1, keepdims=True)
