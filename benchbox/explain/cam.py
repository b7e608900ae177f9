"""Grad-CAM and Grad-CAM++ maps through pytorch-grad-cam, per-map normalised, hooks always released."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from .maps import keep_top_fraction, normalise_maps

CAM_KINDS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}


def cam_maps(
    model: nn.Module,
    target_layers: list[nn.Module],
    inputs: torch.Tensor,
    targets: np.ndarray,
    kind: str = "gradcam",
    top_fraction: float | None = None,
    reshape_transform: Callable | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """N x H x W float32 maps in [0, 1] at the input resolution, one per (input, target class).

    `inputs` are N x 3 x H x W, already normalised the way the model expects; the model's
    outputs are the class scores (logits) the targets index. pytorch-grad-cam puts the model
    in eval mode. Its context manager swallows IndexError, so the CAM object is used without
    `with`; its hooks are released and the parameter gradients its backward pass left are
    cleared, even when the call fails. `top_fraction` keeps only that top fraction of each
    map's pixels (see `maps.keep_top_fraction`). `batch_size` bounds memory.
    """
    if kind not in CAM_KINDS:
        raise ValueError(f"unknown CAM kind {kind!r}; choose one of {sorted(CAM_KINDS)}")
    targets = np.asarray(targets)
    if inputs.ndim != 4 or len(targets) != len(inputs):
        raise ValueError(f"need N x 3 x H x W inputs and N targets, got {tuple(inputs.shape)} and {targets.shape}")
    cam = CAM_KINDS[kind](model=model, target_layers=target_layers, reshape_transform=reshape_transform)
    try:
        chunks = []
        for start in range(0, len(inputs), batch_size):
            chunk_targets = [ClassifierOutputTarget(int(t)) for t in targets[start : start + batch_size]]
            chunks.append(cam(input_tensor=inputs[start : start + batch_size], targets=chunk_targets))
            cam.outputs = None  # drop the retained autograd graph before the next chunk
    finally:
        cam.activations_and_grads.release()
        model.zero_grad(set_to_none=True)
    maps = normalise_maps(np.concatenate(chunks) if chunks else np.zeros((0, *inputs.shape[2:]), np.float32))
    return maps if top_fraction is None else keep_top_fraction(maps, top_fraction)
