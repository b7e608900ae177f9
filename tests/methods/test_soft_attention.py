"""soft_attention and resnet50: the attention block, smoke fits, explainers, two-phase freezing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import benchbox.methods.soft_attention as module
from benchbox.methods.commands import parameter_counts
from benchbox.methods.soft_attention import SoftSpatialAttention
from benchbox.registry import get_card
from benchbox.training.data import normalise


class TrainableSpy:
    """Wraps train_stage: records, per stage, the names of the parameters its optimizer updates."""

    def __init__(self, real):
        self.real, self.stages = real, []

    def __call__(self, network, optimizer, *args, **kwargs):
        names = {id(p): name for name, p in network.named_parameters()}
        self.stages.append({names[id(p)] for group in optimizer.param_groups for p in group["params"]})
        return self.real(network, optimizer, *args, **kwargs)


@pytest.fixture(scope="module")
def fitted(tiny_sets):
    """Both variants fitted in the smoke profile (from scratch), with the trainable sets of each stage."""
    train, val, _ = tiny_sets
    methods, stages = {}, {}
    real = module.train_stage
    try:
        for name in ("soft_attention", "resnet50"):
            module.train_stage = spy = TrainableSpy(real)
            card = get_card(name)
            methods[name] = card.create()
            methods[name].fit(train, val, card.context("smoke", progress=False))
            stages[name] = spy.stages
    finally:
        module.train_stage = real
    return methods, stages


def test_attention_map_is_a_spatial_distribution_and_starts_uniform():
    block = SoftSpatialAttention(channels=8)
    features = torch.rand(2, 8, 3, 3)
    torch.testing.assert_close(block(features), features)  # zero-initialised: uniform map, features unchanged
    with torch.no_grad():
        block.heads.weight.normal_()
    weights = block.weights(features)
    assert weights.shape == (2, 1, 3, 3)
    torch.testing.assert_close(weights.sum(dim=(2, 3)), torch.ones(2, 1))
    torch.testing.assert_close(block(features), features * weights * 9)


def test_parameter_counts_at_paper_size():
    trunk = sum(p.numel() for name, p in torchvision.models.resnet50(weights=None).named_parameters() if not name.startswith("fc."))
    head = 2048 * 256 + 256 + 256 * 7 + 7
    assert parameter_counts(get_card("resnet50"))[0] == pytest.approx((trunk + head) / 1e6)
    attention = 2048 * 16 * 9 + 16
    assert parameter_counts(get_card("soft_attention"))[0] == pytest.approx((trunk + head + attention) / 1e6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["soft_attention", "resnet50"])
def test_smoke_fit_outputs_and_round_trip(fitted, tiny_sets, name, tmp_path):
    _, _, test = tiny_sets
    method = fitted[0][name]
    probs = method.predict_proba(test.images)
    assert probs.shape == (10, 7) and (probs >= 0).all() and np.abs(probs.sum(axis=1) - 1).max() < 1e-9
    maps = method.explain(test.images, np.zeros(10, int), "gradcam")
    assert maps.shape == (10, 48, 48) and maps.min() >= 0 and maps.max() <= 1
    assert np.abs(maps - method.explain(test.images, np.full(10, 4), "gradcam")).max() > 0.1
    method.save(tmp_path)
    again = get_card(name).create()
    again.load(tmp_path)
    np.testing.assert_array_equal(again.predict_proba(test.images), probs)


@pytest.mark.slow
def test_attention_explainer_is_the_models_own_map_for_every_target(fitted, tiny_sets):
    _, _, test = tiny_sets
    method = fitted[0]["soft_attention"]
    maps = method.explain(test.images, np.zeros(10, int), "attention")
    assert maps.shape == (10, 48, 48) and maps.min() >= 0 and maps.max() <= 1
    np.testing.assert_array_equal(maps, method.explain(test.images, np.full(10, 5), "attention"))
    network = method.nets[0].eval()
    with torch.no_grad():  # the map peaks where the attention weights peak
        inputs = torch.from_numpy(test.images[:1]).permute(0, 3, 1, 2)
        weights = network.attention.weights(network.features(normalise(inputs)))[0, 0]
    row, col = np.unravel_index(weights.argmax().item(), weights.shape)
    cell = maps[0, row * 24 : (row + 1) * 24, col * 24 : (col + 1) * 24]
    assert cell.max() == pytest.approx(1.0)


@pytest.mark.slow
def test_pretrained_phase_one_freezes_the_backbone_and_phase_two_only_its_top(tmp_path, tiny_sets, monkeypatch):
    torch.manual_seed(1)
    saved = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(saved, tmp_path / "resnet50.pth")
    spy = TrainableSpy(module.train_stage)
    monkeypatch.setattr(module, "train_stage", spy)
    card = get_card("soft_attention")
    method = card.create()
    context = card.context("smoke", pretrained=True, weights_dir=tmp_path, progress=False)
    context.settings.update(max_train_images=14, max_val_images=7)
    train, val, _ = tiny_sets
    method.fit(train, val, context)
    phase1, phase2 = spy.stages
    assert phase1 == {n for n, _ in method.nets[0].named_parameters() if n.startswith(("head.", "attention."))}
    unfrozen = {n[len("backbone."):] for n in phase2 - phase1}
    assert {n for n, _ in method.nets[0].backbone.layer4.named_parameters(prefix="layer4")} <= unfrozen
    assert not any(n.startswith(("conv1", "bn1", "layer1", "layer2")) for n in unfrozen)
    state = method.nets[0].backbone.state_dict()
    for key in ("conv1.weight", "bn1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.bn1.running_var"):
        assert torch.equal(state[key], saved[key]), key  # below the top 40%: frozen weights and statistics


@pytest.mark.slow
def test_from_scratch_both_phases_train_every_layer(fitted):
    methods, stages = fitted
    for name in ("soft_attention", "resnet50"):
        every = {n for n, _ in methods[name].nets[0].named_parameters()}
        assert stages[name] == [every, every]
