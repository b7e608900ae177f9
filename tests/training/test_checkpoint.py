from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from benchbox.errors import BenchboxError
from benchbox.training.checkpoint import load_checkpoint, load_state_dict_file, save_checkpoint


class Payload:
    """An arbitrary pickled object: what a malicious or careless checkpoint would carry."""

    def __reduce__(self):
        return (print, ("code ran on load",))


def test_checkpoint_round_trip(tmp_path):
    net = nn.Linear(3, 2)
    save_checkpoint(tmp_path, {"network_0": net.state_dict()}, {"method": "m", "settings": {"lr": 0.1}})
    states, info = load_checkpoint(tmp_path)
    assert info["method"] == "m" and info["settings"] == {"lr": 0.1} and info["networks"] == ["network_0"]
    assert all(torch.equal(states["network_0"][k], v) for k, v in net.state_dict().items())
    assert json.loads((tmp_path / "checkpoint.json").read_text())["format"] == 1


def test_a_checkpoint_carrying_pickled_code_is_refused(tmp_path, capsys):
    torch.save({"weight": torch.ones(2), "payload": Payload()}, tmp_path / "network_0.pt")
    with pytest.raises(BenchboxError, match="refused .*network_0.pt: it carries pickled objects other than tensors"):
        load_state_dict_file(tmp_path / "network_0.pt")
    assert "code ran on load" not in capsys.readouterr().out


def test_a_pickled_module_is_refused_through_load_checkpoint(tmp_path):
    save_checkpoint(tmp_path, {"network_0": nn.Linear(2, 2).state_dict()}, {"method": "m"})
    torch.save(nn.Linear(2, 2), tmp_path / "network_0.pt")  # a whole module: pickled class references
    with pytest.raises(BenchboxError, match="refused"):
        load_checkpoint(tmp_path)


def test_a_folder_without_checkpoint_is_named(tmp_path):
    with pytest.raises(BenchboxError, match="holds no benchbox checkpoint"):
        load_checkpoint(tmp_path)
