"""TorchMethod's shared body on a tiny two-member ensemble: averaging, TTA, sharpening, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchbox.errors import BenchboxError
from benchbox.explain.cam import cam_maps
from benchbox.explain.maps import keep_top_fraction
from benchbox.methods.torch_method import TorchMethod
from benchbox.training.data import model_inputs


class TinyEnsemble(TorchMethod):
    name = "tiny_ensemble"
    task = "binary"
    explainers = ("gradcam", "smoothgrad")
    pretrained_archs = ("resnet18",)

    def members(self, settings):
        return int(settings["members"])

    def build_network(self, settings):
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    def cam_target_layers(self, network):
        return [network[1]]

    def extra_state(self):
        return {"threshold": self.threshold}

    def set_extra_state(self, state):
        self.threshold = state["threshold"]

    def fit(self, train, val, ctx):
        raise NotImplementedError


@pytest.fixture
def ensemble():
    torch.manual_seed(0)
    method = TinyEnsemble()
    method.build({"input_size": 8, "members": 2, "tta": ["identity", "vflip"], "cam_top_fraction": 0.25, "smoothgrad_samples": 4})
    method.threshold = 0.42
    return method


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)


def test_predictions_average_members_and_views(ensemble, images):
    x = model_inputs(images, "cpu")
    with torch.no_grad():
        expected = sum(torch.softmax(net(v), 1) for net in ensemble.nets for v in (x, x.flip(-2))) / 4
    np.testing.assert_allclose(ensemble.predict_proba(images), expected.double().numpy(), atol=1e-6)


def test_maps_average_members_then_keep_the_top_fraction(ensemble, images):
    targets = np.array([0, 1, 1])
    x = model_inputs(images, "cpu")
    raw = np.mean([cam_maps(net, [net[1]], x, targets, kind="gradcam") for net in ensemble.nets], axis=0)
    maps = ensemble.explain(images, targets, "gradcam")
    np.testing.assert_allclose(maps, keep_top_fraction(raw, 0.25), atol=1e-6)
    assert ((maps > 0).sum(axis=(1, 2)) <= 0.25 * 64 + 8).all()  # ties at the cut may add a few
    smooth = ensemble.explain(images, targets, "smoothgrad")
    assert smooth.shape == (3, 8, 8) and smooth.min() >= 0 and smooth.max() <= 1


def test_checkpoint_keeps_every_member_and_the_extra_state(ensemble, images, tmp_path):
    ensemble.save(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["network_0.pt", "network_1.pt"]
    again = TinyEnsemble()
    again.load(tmp_path)
    assert again.threshold == 0.42 and again.settings["members"] == 2
    np.testing.assert_array_equal(again.predict_proba(images), ensemble.predict_proba(images))


def test_a_checkpoint_of_another_method_is_refused(ensemble, tmp_path):
    ensemble.save(tmp_path)
    other = type("Other", (TinyEnsemble,), {"name": "other"})()
    with pytest.raises(BenchboxError, match="holds a checkpoint of method 'tiny_ensemble', not 'other'"):
        other.load(tmp_path)


def test_validate_needs_an_input_size_and_checks_weights_only_when_pretrained(tmp_path):
    from benchbox.methods.base import RunContext

    method = TinyEnsemble()
    with pytest.raises(BenchboxError, match="lack input_size"):
        method.validate(RunContext(settings={}))
    method.validate(RunContext(settings={"input_size": 8}, pretrained=False))
    torch.save({"w": torch.zeros(1)}, tmp_path / "resnet18.pth")
    method.validate(RunContext(settings={"input_size": 8}, pretrained=True, weights_dir=tmp_path))
