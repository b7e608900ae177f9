from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, log_loss, roc_auc_score
from torch import nn

from benchbox.training.loop import StageSettings, score_probabilities, train_stage


def _batches(n_batches: int = 3):
    generator = torch.Generator().manual_seed(0)
    return [
        {"image": torch.randint(0, 255, (4, 3, 4, 4), dtype=torch.uint8, generator=generator), "target": torch.tensor([0, 1, 0, 1])}
        for _ in range(n_batches)
    ]


class PlantedScores:
    """A validation function returning planted scores, remembering the weights it saw each epoch."""

    def __init__(self, scores):
        self.scores, self.seen = list(scores), []

    def __call__(self, network):
        self.seen.append({k: v.clone() for k, v in network.state_dict().items()})
        return self.scores[len(self.seen) - 1]


def _stage(scores, settings, initial_score=None, network=None):
    torch.manual_seed(0)
    network = network or nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
    start = {k: v.clone() for k, v in network.state_dict().items()}
    validate = PlantedScores(scores)
    loss = nn.CrossEntropyLoss()
    result = train_stage(network, torch.optim.SGD(network.parameters(), lr=0.1), _batches(),
                         lambda net, batch: loss(net(batch["inputs"]), batch["target"]),
                         validate, settings, "cpu", progress=False, initial_score=initial_score)  # fmt: skip
    return network, start, validate, result


def _equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_restores_the_best_epoch():
    network, _, validate, result = _stage([0.1, 0.5, 0.3, 0.2, 0.9], StageSettings(epochs=5, patience=2))
    assert (result.best_epoch, result.best_score, result.epochs_run) == (1, 0.5, 4)  # stopped before the 0.9
    assert _equal(network.state_dict(), validate.seen[1])
    assert [round(h["val_score"], 2) for h in result.history] == [0.1, 0.5, 0.3, 0.2]


def test_without_patience_every_epoch_runs_and_nan_never_wins():
    network, _, validate, result = _stage([0.4, math.nan, 0.3], StageSettings(epochs=3))
    assert (result.best_epoch, result.epochs_run) == (0, 3)
    assert _equal(network.state_dict(), validate.seen[0])


def test_a_stage_that_never_beats_its_initial_score_returns_to_its_start():
    network, start, _, result = _stage([0.2, 0.3], StageSettings(epochs=5, patience=2), initial_score=0.6)
    assert (result.best_epoch, result.best_score, result.epochs_run) == (-1, 0.6, 2)
    assert _equal(network.state_dict(), start)


def test_plateau_and_cosine_schedules_move_the_learning_rate():
    *_, result = _stage([0.5, 0.4, 0.4, 0.4], StageSettings(epochs=4, scheduler="plateau", plateau_factor=0.5, plateau_patience=1))
    assert [h["lr"] for h in result.history] == pytest.approx([0.1, 0.1, 0.1, 0.05])  # reduced after 2 stalled epochs
    *_, result = _stage([0.1, 0.2, 0.3, 0.4], StageSettings(epochs=4, scheduler="cosine"))
    expected = [0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert [h["lr"] for h in result.history] == pytest.approx(expected)


def _annealed(start: float, end: float, fraction: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * fraction))


def test_onecycle_warms_up_then_anneals_per_batch():
    *_, result = _stage([0.1, 0.2, 0.3, 0.4], StageSettings(epochs=4, scheduler="onecycle", warmup_fraction=0.3))
    peak, steps = 0.1, 4 * 3 + 1  # 3 batches an epoch, and the step after the last
    start, floor, turn = peak / 25, peak / 25 / 1e4, 0.3 * steps - 1  # torch OneCycleLR's defaults, steps counted from 0

    def lr_after(step: int) -> float:
        if step <= turn:
            return _annealed(start, peak, step / turn)
        return _annealed(peak, floor, (step - turn) / (steps - 1 - turn))

    # the lr in the history is read after an epoch's last batch: steps 3, 6, 9, 12
    assert [h["lr"] for h in result.history] == pytest.approx([lr_after(3 * (e + 1)) for e in range(4)])
    assert result.history[0]["lr"] > result.history[1]["lr"] > result.history[3]["lr"]  # past the peak after 4 of 12 steps
    assert result.history[3]["lr"] == pytest.approx(floor)


def test_onecycle_refuses_batches_that_change_by_epoch():
    loss = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match="onecycle scheduler needs a loader of fixed length"):
        train_stage(nn.Sequential(nn.Flatten(), nn.Linear(48, 2)), torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1),
                    lambda epoch: _batches(), lambda net, batch: loss(net(batch["inputs"]), batch["target"]),
                    lambda net: 0.5, StageSettings(epochs=2, scheduler="onecycle"), "cpu", progress=False)  # fmt: skip


def test_a_diverging_loss_stops_with_a_message():
    network = nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train_stage(network, torch.optim.SGD(network.parameters(), lr=0.1), _batches(),
                    lambda net, batch: net(batch["inputs"]).sum() * math.inf,
                    PlantedScores([0.0]), StageSettings(epochs=1), "cpu", progress=False)  # fmt: skip


def test_validation_scores_match_scikit_learn():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), size=50)
    targets = np.r_[np.arange(7), rng.integers(0, 5, 43)]
    predicted = probs.argmax(axis=1)
    assert score_probabilities(probs, targets, "balanced_accuracy") == pytest.approx(balanced_accuracy_score(targets, predicted))
    assert score_probabilities(probs, targets, "macro_f1") == pytest.approx(f1_score(targets, predicted, average="macro"))
    assert score_probabilities(probs, targets, "neg_log_loss") == pytest.approx(-log_loss(targets, probs))
    assert score_probabilities(probs, targets, "auc") == pytest.approx(roc_auc_score(targets, probs, multi_class="ovr"))
    binary = np.c_[1 - probs[:, 0], probs[:, 0]]
    y = (targets == 0).astype(int)
    assert score_probabilities(binary, y, "auc") == pytest.approx(roc_auc_score(y, binary[:, 1]))
    assert math.isnan(score_probabilities(binary, np.ones(50, int), "auc"))


def test_the_best_weights_are_also_kept_on_disk(tmp_path):
    network = nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
    validate = PlantedScores([0.2, 0.7, 0.1])
    loss = nn.CrossEntropyLoss()
    train_stage(network, torch.optim.SGD(network.parameters(), lr=0.1), _batches(),
                lambda net, batch: loss(net(batch["inputs"]), batch["target"]), validate,
                StageSettings(epochs=3), "cpu", progress=False, checkpoint_path=tmp_path / "stage" / "best.pt")  # fmt: skip
    assert _equal(torch.load(tmp_path / "stage" / "best.pt", weights_only=True), validate.seen[1])
