from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from benchbox.explain.cam import cam_maps
from benchbox.explain.maps import keep_top_fraction, normalise_maps


def gap_linear_model(seed: int = 0) -> nn.Sequential:
    """1x1 conv features at input resolution -> global average pool -> linear head."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def features(model: nn.Sequential, inputs: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model[1](model[0](inputs)).numpy()


def test_gradcam_on_a_pooled_linear_head_is_the_class_activation_map():
    # d logit_c / d A_k(i, j) = W[c, k] / (H W), so Grad-CAM = ReLU(sum_k W[c, k] A_k): Zhou et al.'s CAM.
    model = gap_linear_model()
    inputs = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    targets = np.array([0, 2, 1])
    out = cam_maps(model, [model[1]], inputs, targets, kind="gradcam")
    acts = features(model, inputs)
    weights = model[4].weight.detach().numpy()[targets]
    expected = normalise_maps(np.maximum(np.einsum("nk,nkhw->nhw", weights, acts), 0))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert out.shape == (3, 8, 8) and out.dtype == np.float32


def test_gradcam_plus_plus_keeps_only_channels_with_positive_gradients():
    # Only channel 2 has a positive weight for class 0, so Grad-CAM++ (ReLU on the gradients,
    # Chattopadhay et al. eq. 19) must return channel 2's activation map alone.
    model = gap_linear_model(seed=2)
    with torch.no_grad():
        model[4].weight[0] = torch.tensor([-0.5, -1.0, 2.0, -0.3])
    inputs = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    out = cam_maps(model, [model[1]], inputs, np.zeros(2, int), kind="gradcam++")
    np.testing.assert_allclose(out, normalise_maps(features(model, inputs)[:, 2]), atol=1e-5)


def test_a_constant_cam_comes_out_as_zeros():
    model = gap_linear_model()
    with torch.no_grad():
        model[0].weight.zero_()  # features no longer depend on the input: a flat map
    out = cam_maps(model, [model[1]], torch.randn(2, 3, 5, 5), np.array([0, 1]))
    assert np.array_equal(out, np.zeros((2, 5, 5), np.float32))


def test_top_fraction_sharpens_each_map():
    model = gap_linear_model()
    inputs = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    plain = cam_maps(model, [model[1]], inputs, np.array([0, 1]))
    sharp = cam_maps(model, [model[1]], inputs, np.array([0, 1]), top_fraction=0.25)
    np.testing.assert_array_equal(sharp, keep_top_fraction(plain, 0.25))
    assert ((sharp > 0).sum(axis=(1, 2)) <= 16).all()


def test_errors_surface_and_hooks_are_released():
    # pytorch-grad-cam's `with` block would print and swallow this IndexError.
    model = gap_linear_model()
    with pytest.raises(IndexError):
        cam_maps(model, [model[1]], torch.randn(1, 3, 4, 4), np.array([7]))
    assert not model[1]._forward_hooks
    cam_maps(model, [model[1]], torch.randn(1, 3, 4, 4), np.array([1]))
    assert not model[1]._forward_hooks
    assert all(p.grad is None for p in model.parameters())


def test_resnet18_maps_are_batch_size_independent_and_in_unit_range():
    # 64 px: layer4 is 2 x 2 (at 32 px it is 1 x 1 and every CAM is flat).
    torch.manual_seed(0)
    model = resnet18(weights=None, num_classes=7)
    inputs = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    targets = np.array([0, 6])
    whole = cam_maps(model, [model.layer4[-1]], inputs, targets, kind="gradcam++")
    chunked = cam_maps(model, [model.layer4[-1]], inputs, targets, kind="gradcam++", batch_size=1)
    np.testing.assert_allclose(whole, chunked, atol=1e-5)
    assert whole.shape == (2, 64, 64) and whole.min() >= 0
    np.testing.assert_allclose(whole.max(axis=(1, 2)), 1.0)
    assert not model.training  # explained in eval mode


def test_unknown_kind_is_rejected():
    model = gap_linear_model()
    with pytest.raises(ValueError, match="gradcam"):
        cam_maps(model, [model[1]], torch.randn(1, 3, 4, 4), np.array([0]), kind="scorecam")
