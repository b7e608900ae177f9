"""The gate on real tiny runs: a 3-seed baseline of two tiny methods on a small synthderm, then
planted regressions (shuffled training labels, learning rate 0, AUC computed on 1 - p) each fail
the method they were planted in, and `benchbox gate --rerun` of the baseline itself passes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchbox import cli
from benchbox.data.synthderm import generate
from benchbox.gate import gate, read_baseline, rerun_config, write_baseline
from benchbox.labels import CLASSES
from benchbox.methods.base import Method
from benchbox.metrics import binary as binary_metrics
from benchbox.registry import METHOD_CLASSES, register_method
from benchbox.runner.run import execute

N_FEATURES = 18


def tiny_profiles(**change) -> dict:
    settings = {"input_size": 32, "epochs": 25, "batch_size": 128, "lr": 0.05, "shuffle_labels": False, **change}
    return {p: dict(settings) for p in ("smoke", "quick", "paper")}


class GateTinyMulticlass(Method):
    """Class-weighted softmax regression on colour statistics of the whole image and its centre,
    trained by seeded minibatch Adam: well above chance on synthderm in a second, with some
    seed-to-seed spread. Reads lr and shuffle_labels from its card's profile."""

    name = "gate_tiny_multiclass"
    task = "multiclass"
    explainers = ("saliency",)
    card = {"profiles": tiny_profiles()}
    outputs = len(CLASSES)

    def __init__(self):
        self.net = nn.Linear(N_FEATURES, self.outputs)
        nn.init.zeros_(self.net.weight)  # a zero-initialised head, as many trainers use: with lr 0 it
        nn.init.zeros_(self.net.bias)  # predicts uniform probabilities, whatever the seed
        self.mu, self.sd = torch.zeros(N_FEATURES), torch.ones(N_FEATURES)

    def _inputs(self, images):
        return torch.tensor(np.asarray(images), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0

    def _labels(self, train):
        return torch.as_tensor(np.array(train.labels)).long()

    @staticmethod
    def _features(x):
        h = x.shape[-1]
        centre = x[..., h // 4: 3 * h // 4, h // 4: 3 * h // 4]
        return torch.cat([x.mean((2, 3)), x.std((2, 3)), centre.mean((2, 3)), centre.std((2, 3)),
                          centre.mean((2, 3)) - x.mean((2, 3)), centre.amin((2, 3))], 1)

    def forward(self, x):
        return self.net((self._features(x) - self.mu) / self.sd)

    def fit(self, train, val, ctx):
        torch.manual_seed(ctx.seed)
        x, y = self._inputs(train.images), self._labels(train)
        if ctx.settings["shuffle_labels"]:  # the planted bug: labels no longer match images
            y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1000 + ctx.seed))]
        features = self._features(x)
        self.mu, self.sd = features.mean(0), features.std(0) + 1e-6
        weight = 1.0 / torch.bincount(y, minlength=self.outputs).clamp(min=1).float()
        optimiser = torch.optim.Adam(self.net.parameters(), lr=ctx.settings["lr"])
        inputs = (features - self.mu) / self.sd
        order = torch.Generator().manual_seed(ctx.seed)  # the seed's only effect: the minibatch order
        for _ in range(ctx.settings["epochs"]):
            for batch in torch.randperm(len(y), generator=order).split(ctx.settings["batch_size"]):
                optimiser.zero_grad()
                nn.functional.cross_entropy(self.net(inputs[batch]), y[batch], weight=weight).backward()
                optimiser.step()

    def predict_proba(self, images):
        with torch.no_grad():
            return torch.softmax(self.forward(self._inputs(images)), dim=1).double().numpy()

    def explain(self, images, targets, explainer):
        x = self._inputs(images).requires_grad_(True)
        self.forward(x)[torch.arange(len(x)), torch.as_tensor(targets)].sum().backward()
        maps = x.grad.abs().amax(dim=1).numpy()
        top = maps.reshape(len(maps), -1).max(axis=1)[:, None, None]
        return np.where(top > 0, maps / np.where(top > 0, top, 1), 0).astype(np.float32)

    def save(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        torch.save({"net": self.net.state_dict(), "mu": self.mu, "sd": self.sd}, directory / "net.pt")

    def load(self, directory: Path):
        state = torch.load(directory / "net.pt", weights_only=True)
        self.net.load_state_dict(state["net"])
        self.mu, self.sd = state["mu"], state["sd"]

    def networks(self):
        return [self.net]


class GateTinyBinary(GateTinyMulticlass):
    name = "gate_tiny_binary"
    task = "binary"
    card = {"profiles": tiny_profiles()}  # its own, so a planted card change stays in one method
    outputs = 2

    def _labels(self, train):
        return torch.as_tensor(np.array(train.malignant)).long()


for _cls in (GateTinyMulticlass, GateTinyBinary):
    if _cls.name not in METHOD_CLASSES:
        register_method(_cls)

METHODS = [GateTinyMulticlass.name, GateTinyBinary.name]


@pytest.fixture(scope="module", autouse=True)
def no_report():
    """The markdown report (plots: most of a tiny run's time) plays no part in the gate."""
    from benchbox.runner import run as run_module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "_report", lambda run_dir, record, progress: None)
        yield


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, no_report) -> Path:
    """A 3-seed run of both tiny methods and its baseline file."""
    from benchbox.runner.config import RunConfig

    root = tmp_path_factory.mktemp("gate")
    generate(root / "synth", n_lesions=240, size=48, seed=3)
    config = RunConfig(methods=METHODS, data=f"synthderm:{root / 'synth'}", profile="smoke", seeds=[0, 1, 2],
                       out=str(root / "baseline-run"), explain_n=8, faithfulness="none", device="cpu")
    assert execute(config, progress=False) == 0
    return write_baseline(config.run_dir(), root / "baseline.json")


def rerun(baseline: Path, out: Path) -> Path:
    config = rerun_config(read_baseline(baseline), out, device="cpu")
    execute(config, progress=False)
    return config.run_dir()


def verdicts(markdown: str) -> dict[tuple[str, str], str]:
    rows = [line.split("|")[1:-1] for line in markdown.splitlines() if line.startswith("| ")]
    return {(r[0].strip(), r[1].strip()): r[-1].strip() for r in rows[1:]}


def failed(markdown: str) -> set[tuple[str, str]]:
    return {key for key, verdict in verdicts(markdown).items() if verdict.startswith("FAIL")}


def test_baseline_stores_per_seed_values_config_and_is_gateable(baseline):
    data = json.loads(baseline.read_text())
    assert data["benchbox_gate_baseline"] == 2
    assert data["config"]["methods"] == METHODS and data["config"]["seeds"] == [0, 1, 2]
    assert data["protocol"]["explain_n"] == 8 and data["protocol"]["deletion_steps"] == 8
    assert data["libraries"]["torch"] and data["hardware"]
    auc = data["methods"]["gate_tiny_binary"]["metrics"]["binary.auc"]
    assert set(auc["values"]) == set(auc["ci_low"]) == {"0", "1", "2"} and auc["higher_is_better"] is True
    assert np.mean(list(auc["values"].values())) > 0.65  # gateable: beats chance 0.5 by 1.5 x 0.10
    balanced = data["methods"]["gate_tiny_multiclass"]["metrics"]["balanced_accuracy"]["values"]
    assert np.mean(list(balanced.values())) > 1 / 7 + 0.15


def test_cli_rerun_of_the_baseline_passes(baseline, tmp_path, capsys):
    out = tmp_path / "rerun"
    code = cli.main(["gate", "--baseline", str(baseline), "--rerun", "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.out
    assert captured.out.startswith("## benchbox gate: PASS")
    assert "Protocol: same as the baseline" in captured.out and "[1/6]" in captured.err  # runner talk on stderr
    table = verdicts(captured.out)
    assert table[("gate_tiny_binary", "binary.auc")] == "ok"
    assert table[("gate_tiny_multiclass", "balanced_accuracy")] == "ok"
    assert (out / "run.json").exists() and not failed(captured.out)
    assert captured.out.count("| method ") == 1  # one table, paste-able into a pull request


def test_shuffled_training_labels_fail_that_method_only(baseline, tmp_path, monkeypatch):
    monkeypatch.setattr(GateTinyMulticlass, "card", {"profiles": tiny_profiles(shuffle_labels=True)})
    code, markdown = gate(baseline, rerun(baseline, tmp_path / "shuffled"))
    assert code == 1 and markdown.startswith("## benchbox gate: FAIL")
    bad = failed(markdown)
    assert ("gate_tiny_multiclass", "balanced_accuracy") in bad
    assert {method for method, _ in bad} == {"gate_tiny_multiclass"}
    assert verdicts(markdown)[("gate_tiny_multiclass", "balanced_accuracy")] == "FAIL: regression"


def test_learning_rate_zero_through_the_card_fails(baseline, tmp_path, monkeypatch):
    monkeypatch.setattr(GateTinyBinary, "card", {"profiles": tiny_profiles(lr=0.0)})
    code, markdown = gate(baseline, rerun(baseline, tmp_path / "lr0"))
    assert code == 1
    bad = failed(markdown)
    assert ("gate_tiny_binary", "binary.auc") in bad
    assert {method for method, _ in bad} == {"gate_tiny_binary"}


def test_auc_computed_on_one_minus_p_fails(baseline, tmp_path, monkeypatch):
    original = binary_metrics.rank_replicates

    def wrong(resamples, malignant, score, *args, **kwargs):
        return original(resamples, malignant, 1 - score, *args, **kwargs)

    monkeypatch.setattr(binary_metrics, "rank_replicates", wrong)
    code, markdown = gate(baseline, rerun(baseline, tmp_path / "wrong-auc"))
    assert code == 1
    bad = failed(markdown)
    assert {("gate_tiny_binary", "binary.auc"), ("gate_tiny_multiclass", "binary.auc")} <= bad
    assert ("gate_tiny_multiclass", "balanced_accuracy") not in bad  # the other metrics are untouched
