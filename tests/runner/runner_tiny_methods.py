"""Tiny methods (7-class and binary ones that learn, one that breaks) that let the runner tests run in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchbox.labels import CLASSES
from benchbox.methods.base import Method
from benchbox.registry import METHOD_CLASSES, register_method

TINY_PROFILES = {p: {"input_size": 32, "epochs": 30} for p in ("smoke", "quick", "paper")}


class TinyLinear(Method):
    """Softmax regression on 8x8 colour thumbnails: trains in a second, explains by input gradients."""

    name = "tiny_linear"
    task = "multiclass"
    explainers = ("saliency",)
    card = {"profiles": TINY_PROFILES, "claims": {"accuracy": 0.5}, "paper": {"reference": "test"}}
    fits = 0  # how many times fit ran in this session (resume tests count it)

    def __init__(self):
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten(), nn.Linear(8 * 8 * 3, len(CLASSES)))

    def _inputs(self, images):
        return torch.tensor(np.asarray(images), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0

    def fit(self, train, val, ctx):
        type(self).fits += 1
        torch.manual_seed(ctx.seed)
        optimiser = torch.optim.Adam(self.net.parameters(), lr=0.05)
        x, y = self._inputs(train.images), torch.as_tensor(train.labels)
        for _ in range(ctx.settings["epochs"]):
            optimiser.zero_grad()
            nn.functional.cross_entropy(self.net(x), y).backward()
            optimiser.step()

    def predict_proba(self, images):
        with torch.no_grad():
            return torch.softmax(self.net(self._inputs(images)), dim=1).double().numpy()

    def explain(self, images, targets, explainer):
        x = self._inputs(images).requires_grad_(True)
        self.net(x)[torch.arange(len(x)), torch.as_tensor(targets)].sum().backward()
        maps = x.grad.abs().amax(dim=1).numpy()
        top = maps.reshape(len(maps), -1).max(axis=1)[:, None, None]
        return np.where(top > 0, maps / np.where(top > 0, top, 1), 0).astype(np.float32)

    def save(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), directory / "net.pt")

    def load(self, directory: Path):
        from benchbox.training.checkpoint import load_state_dict_file  # as the hosted methods load theirs

        self.net.load_state_dict(load_state_dict_file(directory / "net.pt"))

    def networks(self):
        return [self.net]


class Broken(TinyLinear):
    name = "broken"

    def fit(self, train, val, ctx):
        raise RuntimeError("planted failure in fit")


class TinyBinary(TinyLinear):
    """The same regression on malignant vs benign; `offset` seeds a second, different model."""

    name = "tiny_binary"
    task = "binary"
    offset = 0

    def __init__(self):
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten(), nn.Linear(8 * 8 * 3, 2))

    def fit(self, train, val, ctx):
        torch.manual_seed(ctx.seed + self.offset)
        optimiser = torch.optim.Adam(self.net.parameters(), lr=0.05)
        x, y = self._inputs(train.images), torch.as_tensor(train.malignant).long()
        for _ in range(ctx.settings["epochs"] // (1 + self.offset)):
            optimiser.zero_grad()
            nn.functional.cross_entropy(self.net(x), y).backward()
            optimiser.step()


class TinyBinaryOther(TinyBinary):
    name = "tiny_binary_other"
    offset = 1


class CardedBinary(Method):
    """tiny_binary's regression declared by a YAML card (name, task: the card's), with one post-fit
    setting, `threshold_rule`, so a variant card (`fit_of`) can share its trained model."""

    post_fit_settings = ("threshold_rule",)
    fits = 0  # how many times fit ran in this session
    offset = 0
    _inputs, predict_proba, explain, networks = TinyLinear._inputs, TinyLinear.predict_proba, TinyLinear.explain, TinyLinear.networks

    def __init__(self):
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten(), nn.Linear(8 * 8 * 3, 2))
        self.settings = {}

    def fit(self, train, val, ctx):
        type(self).fits += 1
        self.settings = dict(ctx.settings)
        TinyBinary.fit(self, train, val, ctx)

    def save(self, directory: Path):
        TinyLinear.save(self, directory)
        (directory / "settings.json").write_text(json.dumps(self.settings))

    def load(self, directory: Path):
        TinyLinear.load(self, directory)
        self.settings = json.loads((directory / "settings.json").read_text())

    def operating_threshold(self):
        return {"fixed": 0.5, "low": 0.3}[self.settings["threshold_rule"]]


for cls in (TinyLinear, Broken, TinyBinary, TinyBinaryOther):
    if cls.name not in METHOD_CLASSES:
        register_method(cls)


