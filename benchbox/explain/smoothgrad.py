"""SmoothGrad (Smilkov et al. 2017): input gradients averaged over noisy copies of the input."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .maps import normalise_maps


def smoothgrad_maps(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: np.ndarray,
    n_samples: int = 25,
    noise_level: float = 0.15,
    seed: int = 0,
    batch_size: int = 64,
) -> np.ndarray:
    """N x H x W float32 maps in [0, 1]: mean |d score_target / d input| over `n_samples` noisy copies.

    Noise is Gaussian with std = `noise_level` x (max - min) of each input (the paper's
    10-20 %), drawn by numpy from `seed` in (image, sample) order, so maps depend neither on
    the device nor on `batch_size`. Absolute gradients are averaged, then the maximum over
    colour channels is taken, then each map is min-max normalised on its own. The model is put
    in eval mode; only input gradients are computed (no parameter gradients are left behind).
    `batch_size` is the number of noisy copies per forward/backward pass.
    """
    targets = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    if inputs.ndim != 4 or len(targets) != len(inputs):
        raise ValueError(f"need N x 3 x H x W inputs and N targets, got {tuple(inputs.shape)} and {tuple(targets.shape)}")
    model.eval()
    device = inputs.device
    rng = np.random.default_rng(seed)
    n = len(inputs)
    spans = (inputs.amax(dim=(1, 2, 3)) - inputs.amin(dim=(1, 2, 3))).cpu()
    # Rows of the flattened (image, sample) grid, processed `batch_size` at a time.
    image_of_row = torch.arange(n).repeat_interleave(n_samples)
    grad_sums = torch.zeros(inputs.shape, dtype=torch.float32, device=device)
    for start in range(0, len(image_of_row), batch_size):
        rows = image_of_row[start : start + batch_size]
        noise = torch.from_numpy(rng.standard_normal((len(rows), *inputs.shape[1:]), dtype=np.float32))
        noise *= (noise_level * spans[rows]).view(-1, 1, 1, 1)
        noisy = (inputs[rows.to(device)].detach() + noise.to(device)).requires_grad_(True)
        scores = model(noisy).gather(1, targets[rows].to(device).view(-1, 1)).sum()
        (grads,) = torch.autograd.grad(scores, noisy)
        grad_sums.index_add_(0, rows.to(device), grads.abs())
    maps = grad_sums.amax(dim=1) / n_samples
    return normalise_maps(maps.cpu().numpy())
