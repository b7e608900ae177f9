"""Pretrained weights: a local folder works offline; without weights, the error says what to do."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from benchbox.errors import BenchboxError
from benchbox.training.pretrained import load_pretrained, pretrained_state_dict


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache and no network: what a machine without internet sees."""

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
    torch.hub.set_dir(previous)


def test_weights_dir_is_read_first(tmp_path, offline_hub):
    torch.manual_seed(3)
    saved = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(saved, tmp_path / "resnet18.pth")
    state = pretrained_state_dict("resnet18", tmp_path)
    assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k]) for k in saved)


def test_without_weights_the_message_says_how_to_provide_them(tmp_path, offline_hub):
    with pytest.raises(BenchboxError) as error:
        pretrained_state_dict("resnet50", tmp_path)
    message = str(error.value)
    assert "not available" in message and "--weights-dir" in message and "--no-pretrained" in message
    assert f"{tmp_path}" in message and "resnet50.pth" in message


def test_a_weights_file_with_pickled_code_is_refused(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None), tmp_path / "resnet18.pth")  # a whole module
    with pytest.raises(BenchboxError, match="cannot load pretrained weights .* as a plain state dict"):
        pretrained_state_dict("resnet18", tmp_path)


def test_load_pretrained_copies_matching_tensors_and_refuses_a_wrong_architecture():
    torch.manual_seed(0)
    source = torchvision.models.resnet18(weights=None, num_classes=1000).state_dict()
    target = torchvision.models.resnet18(weights=None, num_classes=7)
    left = load_pretrained(target, source, ignore_prefixes=("fc.",))
    assert left == ["fc.weight", "fc.bias"]
    assert torch.equal(target.layer4[1].conv2.weight, source["layer4.1.conv2.weight"])
    with pytest.raises(BenchboxError, match="do not fit ResNet"):
        load_pretrained(torchvision.models.resnet50(weights=None), source, ignore_prefixes=("fc.",))
