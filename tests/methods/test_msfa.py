"""msfa: the multi-scale block's wiring, a smoke fit's outputs, checkpoints, pretrained loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import benchbox.methods.msfa as msfa_module
from benchbox.errors import BenchboxError
from benchbox.methods.commands import parameter_counts
from benchbox.methods.msfa import MultiScaleAggregation
from benchbox.registry import get_card


@pytest.fixture(scope="module")
def fitted(tiny_sets):
    train, val, _ = tiny_sets
    card = get_card("msfa")
    method = card.create()
    method.fit(train, val, card.context("smoke", progress=False))
    return method


def test_each_branch_is_an_adaptive_average_pool_upsampled_to_the_map():
    block = MultiScaleAggregation(channels=2, bins=(1, 2, 4)).eval()
    with torch.no_grad():  # fusion = pick one branch, BatchNorm and ReLU = identity on positive input
        block.fuse[0].weight.zero_()
        block.fuse[0].weight[:, 0:2, 0, 0] = torch.eye(2)  # branch 0: the 1-bin (global) pool
    features = torch.rand(1, 2, 7, 7) + 1
    out = block(features)
    expected = features.mean(dim=(2, 3), keepdim=True).expand(-1, -1, 7, 7)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        block.fuse[0].weight.zero_()
        block.fuse[0].weight[:, 4:6, 0, 0] = torch.eye(2)  # branch 2: 4 bins, capped at a 2x2 map's size
    small = torch.rand(1, 2, 2, 2) + 1
    torch.testing.assert_close(block(small), small, rtol=1e-4, atol=1e-4)


def test_parameter_count_at_paper_size_is_resnet18_plus_the_msfa_block():
    trunk = sum(p.numel() for name, p in torchvision.models.resnet18(weights=None).named_parameters() if not name.startswith("fc."))
    expected = trunk + 1536 * 512 + 2 * 512 + 512 * 7 + 7  # 1x1 fusion conv, its BatchNorm, the head
    millions, note = parameter_counts(get_card("msfa"))
    assert millions == pytest.approx(expected / 1e6) and note == "at 224 px"
    assert 11.9 < millions < 12.0


@pytest.mark.slow
def test_smoke_fit_gives_probabilities_and_class_specific_maps(fitted, tiny_sets):
    _, _, test = tiny_sets
    probs = fitted.predict_proba(test.images)
    assert probs.shape == (10, 7) and (probs >= 0).all() and np.abs(probs.sum(axis=1) - 1).max() < 1e-9
    maps = fitted.explain(test.images, np.zeros(10, int), "gradcam")
    other = fitted.explain(test.images, np.full(10, 3), "gradcam")
    assert maps.shape == (10, 48, 48) and maps.dtype == np.float32 and maps.min() >= 0 and maps.max() <= 1
    assert np.abs(maps - other).max() > 0.1


@pytest.mark.slow
def test_save_load_round_trip_gives_identical_predictions(fitted, tiny_sets, tmp_path):
    _, _, test = tiny_sets
    fitted.save(tmp_path)
    again = get_card("msfa").create()
    again.load(tmp_path)
    np.testing.assert_array_equal(again.predict_proba(test.images), fitted.predict_proba(test.images))
    np.testing.assert_array_equal(again.explain(test.images[:2], np.array([1, 2]), "gradcam"),
                                  fitted.explain(test.images[:2], np.array([1, 2]), "gradcam"))  # fmt: skip


@pytest.mark.slow
def test_the_same_seed_gives_the_same_model(fitted, tiny_sets):
    train, val, test = tiny_sets
    card = get_card("msfa")
    method = card.create()
    method.fit(train, val, card.context("smoke", progress=False))
    np.testing.assert_array_equal(method.predict_proba(test.images), fitted.predict_proba(test.images))


def test_paper_profile_loads_local_weights_before_training(tmp_path, tiny_sets, monkeypatch):
    torch.manual_seed(5)
    saved = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(saved, tmp_path / "resnet18.pth")
    seen = {}
    monkeypatch.setattr(msfa_module, "train_stage", lambda network, *a, **k: seen.update(network.backbone.state_dict()))
    card = get_card("msfa")
    context = card.context("smoke", pretrained=True, weights_dir=tmp_path, progress=False)
    train, val, _ = tiny_sets
    card.create().fit(train, val, context)
    assert all(torch.equal(seen[k], saved[k]) for k in saved if not k.startswith("fc."))


def test_missing_weights_fail_before_any_training(tmp_path, tiny_sets, monkeypatch):
    def must_not_train(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(msfa_module, "train_stage", must_not_train)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        card = get_card("msfa")
        method = card.create()
        context = card.context("paper", weights_dir=tmp_path, progress=False)
        with pytest.raises(BenchboxError, match="--no-pretrained"):
            method.validate(context)
        train, val, _ = tiny_sets
        with pytest.raises(BenchboxError, match="--weights-dir"):
            method.fit(train, val, context)
    finally:
        torch.hub.set_dir(previous)


def test_explain_refuses_unknown_explainers_and_targets(fitted, tiny_sets):
    _, _, test = tiny_sets
    with pytest.raises(BenchboxError, match="has no explainer 'attention'"):
        fitted.explain(test.images[:2], np.array([0, 1]), "attention")
    with pytest.raises(ValueError, match="one target in"):
        fitted.explain(test.images[:2], np.array([0, 7]), "gradcam")
    with pytest.raises(BenchboxError, match="call fit or load first"):
        get_card("msfa").create().predict_proba(test.images)
