"""Resume inside training: an interrupted fit continues at its last saved epoch and ends where an uninterrupted one does."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchbox.data.arrays import ImageSet
from benchbox.methods.dual_task import CurriculumReplay
from benchbox.registry import get_card
from benchbox.training.data import Augmentation, ImageSetDataset, train_loader
from benchbox.training.loop import StageSettings, train_stage, validator
from benchbox.training.resume import RESUME_FOLDER, STATE_FILE, FitResume

TEST_DIR = Path(__file__).resolve().parent


class Interrupted(Exception):
    """Raised right after a chosen state write: the fit stops as a killed one would, its state on disk."""


@pytest.fixture(autouse=True)
def one_thread():
    """Bit-identical comparisons (also with a subprocess) need the same CPU thread count everywhere."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def every_epoch():
    """These tests interrupt after chosen epochs, so every epoch end writes its state (the default waits a
    minute). Its own MonkeyPatch: the tests' `monkeypatch.undo()` must not undo it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCHBOX_RESUME_EVERY_S", "0")
        yield


def interrupt_after(monkeypatch, writes: int) -> None:
    """Make the `writes`-th state write of the next fit raise `Interrupted` once it is on disk."""
    original, count = FitResume.write, [0]

    def write(self, current):
        original(self, current)
        count[0] += 1
        if count[0] == writes:
            raise Interrupted

    monkeypatch.setattr(FitResume, "write", write)


def same_weights(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


# --- a tiny fit of three stages: two phases of one network on a shared loader, then a second member ---------------


def tiny_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = np.clip(rng.normal(90 + 60 * labels[:, None, None, None], 40, (n, 8, 8, 3)), 0, 255).astype(np.uint8)
    return images, labels


class LossRecorder:
    """A method's own per-epoch state (like dual_task's curriculum): a weighted running sum drawn from its own generator."""

    def __init__(self) -> None:
        self.rng, self.total = np.random.default_rng(5), 0.0

    def observe(self, loss: float) -> None:
        self.total += loss * self.rng.random()

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "total": self.total}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state, self.total = state["rng"], state["total"]


def tiny_network() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Dropout(0.3), nn.Linear(4, 2))  # fmt: skip


def tiny_fit(folder: Path | None, workers: int = 0, identity: str = "tiny-fit"):
    """(final weights of both networks, the recorder's total, the three stage results minus timings); no folder: no resume state."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    resume = FitResume.open(folder, identity, "tiny")
    images, labels = tiny_arrays(16, 0)
    validate = validator(*tiny_arrays(8, 1), "neg_log_loss", "cpu")
    dataset = ImageSetDataset(images, labels, augmentation=Augmentation(colour_jitter=0.1))
    first, second, recorder = tiny_network(), tiny_network(), LossRecorder()

    def batch_loss(net, batch):
        value = F.cross_entropy(net(batch["inputs"]), batch["target"])
        recorder.observe(value.item())
        return value

    common = {"progress": False, "resume": resume, "stateful": {"recorder": recorder}}
    shared = train_loader(dataset, 4, seed=0, num_workers=workers)
    a = train_stage(first, torch.optim.SGD(first.parameters(), lr=0.1, momentum=0.9), shared, batch_loss, validate,
                    StageSettings(epochs=2, scheduler="cosine"), "cpu", name="tiny phase 1", **common)  # fmt: skip
    b = train_stage(first, torch.optim.Adam(first.parameters(), lr=0.01), shared, batch_loss, validate,
                    StageSettings(epochs=2, scheduler="plateau", plateau_patience=0), "cpu", name="tiny phase 2",
                    initial_score=a.best_score, **common)  # fmt: skip
    oversampled = train_loader(dataset, 4, seed=1, indices=np.r_[np.arange(16), [1, 3, 5]], num_workers=workers)
    c = train_stage(second, torch.optim.Adam(second.parameters(), lr=0.02), oversampled, batch_loss, validate,
                    StageSettings(epochs=3, patience=1), "cpu", name="tiny member 2", **common)  # fmt: skip
    if resume is not None:
        resume.close()
    results = [(r.best_score, r.best_epoch, r.epochs_run, [h["val_score"] for h in r.history]) for r in (a, b, c)]
    return [first.state_dict(), second.state_dict()], recorder.total, results


def count_writes(monkeypatch, folder: Path, workers: int) -> tuple[int, tuple]:
    original, count = FitResume.write, [0]

    def write(self, current):
        original(self, current)
        count[0] += 1

    monkeypatch.setattr(FitResume, "write", write)
    reference = tiny_fit(folder, workers)
    monkeypatch.setattr(FitResume, "write", original)
    return count[0], reference


@pytest.mark.parametrize("workers", [0, 2])
def test_a_tiny_fit_interrupted_after_any_epoch_or_stage_ends_where_an_uninterrupted_one_does(monkeypatch, tmp_path, workers, caplog):
    """Phases sharing a loader, a second member, schedulers, a method's own state and (2) persistent loader workers."""
    writes, reference = count_writes(monkeypatch, tmp_path / "reference", workers)
    assert writes == 2 + 1 + 2 + 1 + reference[2][2][2] + 1  # an epoch end each, and each stage's end
    assert not (tmp_path / "reference" / RESUME_FOLDER).exists()  # closed: nothing left behind
    for k in range(1, writes + 1):
        folder = tmp_path / f"interrupted-{k}"
        interrupt_after(monkeypatch, k)
        with pytest.raises(Interrupted):
            tiny_fit(folder, workers)
        monkeypatch.undo()
        assert (folder / RESUME_FOLDER / STATE_FILE).exists()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="benchbox.training"):
            weights, total, results = tiny_fit(folder, workers)
        assert same_weights(weights, reference[0]), f"interrupted after write {k}"
        assert total == reference[1] and results == reference[2], f"interrupted after write {k}"
        if k == 4:  # after epoch 1 of phase 2: phase 1 is restored whole, phase 2 goes on at its epoch 2
            assert "resuming tiny: tiny phase 1 was finished by an earlier run" in caplog.text
            assert "resuming tiny phase 2 at epoch 2/2" in caplog.text
        assert "training tiny from scratch" not in caplog.text
    without_state = tiny_fit(None, workers)  # saving the state draws nothing and changes nothing
    assert same_weights(without_state[0], reference[0]) and without_state[1:] == reference[1:]


def test_a_damaged_or_foreign_state_is_ignored_with_a_log_line_and_the_fit_starts_over(monkeypatch, tmp_path, caplog):
    reference = tiny_fit(tmp_path / "reference")
    cases = {
        "truncated state": lambda folder: folder.joinpath(STATE_FILE).write_bytes(folder.joinpath(STATE_FILE).read_bytes()[:300]),
        "garbage state": lambda folder: folder.joinpath(STATE_FILE).write_bytes(b"not a state file"),
        "damaged stage file": lambda folder: folder.joinpath("stage-0.pt").write_bytes(b"\0" * 64),
    }
    for case, damage in cases.items():
        folder = tmp_path / case.replace(" ", "-")
        interrupt_after(monkeypatch, 4)  # inside phase 2: state.pt and stage-0.pt exist
        with pytest.raises(Interrupted):
            tiny_fit(folder)
        monkeypatch.undo()
        damage(folder / RESUME_FOLDER)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="benchbox.training"):
            weights, total, results = tiny_fit(folder)
        assert "ignoring the resume state" in caplog.text and "cannot be read" in caplog.text, case
        assert "training tiny from scratch" in caplog.text and "resuming" not in caplog.text, case
        assert same_weights(weights, reference[0]) and results == reference[2], case
    folder = tmp_path / "foreign"
    interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        tiny_fit(folder, identity="another fit")
    monkeypatch.undo()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="benchbox.training"):
        weights, _, _ = tiny_fit(folder)
    assert "belongs to another fit" in caplog.text and "resuming" not in caplog.text
    assert same_weights(weights, reference[0])


def test_the_curriculum_of_dual_task_continues_from_its_saved_state():
    targets = np.array([0] * 6 + [1] * 3 + [2])
    schedule = CurriculumReplay(targets, 4, 0.3, 0.5, np.random.default_rng(0))
    schedule.epoch_indices(0)
    schedule.record(np.arange(10), np.linspace(0, 1, 10))
    state = schedule.state_dict()
    expected = [schedule.epoch_indices(1), schedule.epoch_indices(2)]
    again = CurriculumReplay(targets, 4, 0.3, 0.5, np.random.default_rng(99))
    again.load_state_dict(state)
    np.testing.assert_array_equal(again.losses, np.linspace(0, 1, 10))
    for epoch, indices in zip((1, 2), expected):
        np.testing.assert_array_equal(again.epoch_indices(epoch), indices)


# --- real methods at the smoke profile (tiny images, few of them) ---------------------------------------------------


def image_set(n: int, seed: int, size: int = 32) -> ImageSet:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 7
    base = np.stack([labels * 30 + 40, 200 - labels * 20, (labels * 70) % 255], axis=1)[:, None, None, :]
    return ImageSet(
        image_ids=np.array([f"IMG_{seed}_{i}" for i in range(n)]),
        images=np.clip(base + rng.normal(0, 40, (n, size, size, 3)), 0, 255).astype(np.uint8),
        labels=labels,
        groups=np.array([f"G_{seed}_{i // 2}" for i in range(n)]),
    )


SMALL = {"input_size": 32, "max_train_images": 24, "max_val_images": 8, "batch_size": 8}
METHOD_SETTINGS = {
    "msfa": {"epochs": 3},
    "soft_attention": {"phase1": {"epochs": 1, "lr": 0.002, "scheduler": "plateau", "plateau_patience": 1},
                       "phase2": {"epochs": 2, "lr": 0.0003, "scheduler": "plateau", "plateau_patience": 1}},
    "recall_ensemble": {"folds": 2, "epochs": 2},
}  # fmt: skip


def fit_method(name: str, folder: Path | None, fit_key: str | None = None):
    """A smoke-profile fit of `name` on 24 tiny images: (the method, its predictions on 10 others)."""
    card = get_card(name)
    ctx = card.context("smoke", progress=False, checkpoint_dir=folder)
    ctx.settings.update({**SMALL, **METHOD_SETTINGS[name]})
    ctx.fit_key = fit_key
    method = card.create()
    method.fit(image_set(24, 0), image_set(8, 1), ctx)
    return method, method.predict_proba(image_set(10, 2).images)


def weights_of(method) -> list[dict]:
    return [net.state_dict() for net in method.nets]


@pytest.fixture(scope="module")
def uninterrupted():
    """Each method's fit without a checkpoint folder (so without any resume state), fitted once per module."""
    torch.set_num_threads(1)
    found = {}

    def get(name):
        if name not in found:
            method, probs = fit_method(name, None)
            found[name] = (weights_of(method), probs)
        return found[name]

    return get


@pytest.mark.slow
def test_saving_the_state_changes_nothing_and_the_state_goes_when_the_fit_is_done(uninterrupted, tmp_path):
    method, probs = fit_method("msfa", tmp_path / "work")
    reference_weights, reference_probs = uninterrupted("msfa")
    assert same_weights(weights_of(method), reference_weights)
    np.testing.assert_array_equal(probs, reference_probs)
    assert not (tmp_path / "work" / RESUME_FOLDER).exists()
    assert (tmp_path / "work" / "train.pt").exists()  # the best-weights checkpoint stays as before


def test_by_default_epoch_states_wait_a_minute_and_finished_stages_are_always_kept(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCHBOX_RESUME_EVERY_S")  # restored by every_epoch's own MonkeyPatch afterwards
    written = []
    monkeypatch.setattr(FitResume, "write", lambda self, current: written.append(current))
    fit = FitResume(tmp_path / RESUME_FOLDER, "identity", "tiny")
    assert fit.every_s == 60.0 and not fit.due()
    stage = fit.stage("tiny")
    network = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    epoch = dict(stopped=False, network=network, optimizer=optimizer, scheduler=None, best_score=0.5, best_epoch=0,
                 best_state=None, history=[], batches=None, stateful={})
    stage.save_epoch(epochs_done=1, **epoch)
    assert written == []  # a seconds-long epoch does not pay for a state write
    fit.last_write -= 61
    stage.save_epoch(epochs_done=2, **epoch)
    assert [state["epochs_done"] for state in written] == [2]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "writes", "resumes_at"), [
    ("msfa", 1, "resuming msfa at epoch 2/3"),
    ("soft_attention", 3, "resuming soft_attention phase 2 at epoch 2/2"),  # phase 1 (1 epoch + its end), epoch 1 of phase 2
    ("recall_ensemble", 4, "resuming recall_ensemble fold 2/2 at epoch 2/2"),  # member 1 (2 + 1), epoch 1 of member 2
])  # fmt: skip
def test_a_method_interrupted_inside_its_fit_resumes_there_and_ends_with_the_same_weights(
    uninterrupted, monkeypatch, tmp_path, caplog, name, writes, resumes_at
):
    interrupt_after(monkeypatch, writes)
    with pytest.raises(Interrupted):
        fit_method(name, tmp_path / "work")
    monkeypatch.undo()
    with caplog.at_level(logging.INFO):
        method, probs = fit_method(name, tmp_path / "work")
    assert resumes_at in caplog.text
    reference_weights, reference_probs = uninterrupted(name)
    assert same_weights(weights_of(method), reference_weights)
    np.testing.assert_array_equal(probs, reference_probs)
    assert not (tmp_path / "work" / RESUME_FOLDER).exists()


@pytest.mark.slow
def test_a_damaged_state_file_or_one_of_another_fit_key_is_not_trusted(uninterrupted, monkeypatch, tmp_path, caplog):
    damaged = tmp_path / "damaged"
    (damaged / RESUME_FOLDER).mkdir(parents=True)
    (damaged / RESUME_FOLDER / STATE_FILE).write_bytes(b"PK\x03\x04 half a zip file")
    with caplog.at_level(logging.INFO):
        method, probs = fit_method("msfa", damaged)
    assert "ignoring the resume state" in caplog.text and "training msfa from scratch" in caplog.text
    np.testing.assert_array_equal(probs, uninterrupted("msfa")[1])
    interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        fit_method("msfa", tmp_path / "foreign", fit_key="another fit key")
    monkeypatch.undo()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        method, probs = fit_method("msfa", tmp_path / "foreign", fit_key="this fit key")
    assert "belongs to another fit" in caplog.text and "resuming msfa" not in caplog.text
    assert same_weights(weights_of(method), uninterrupted("msfa")[0])


KILLED_FIT = """
import sys, time
from pathlib import Path
import torch
sys.path.insert(0, {test_dir!r})
import test_resume
from benchbox.training import loop

torch.set_num_threads(1)
folder = Path(sys.argv[1])
state, original, batches = folder / "resume" / "state.pt", loop.batch_to_device, [0]

def batch_to_device(batch, device):
    if state.exists():  # epoch 1 is saved: this is epoch 2
        batches[0] += 1
        if batches[0] == 2:  # one optimiser step of epoch 2 is done: wait here to be killed
            (folder / "in-epoch-2").touch()
            time.sleep(600)
    return original(batch, device)

loop.batch_to_device = batch_to_device
test_resume.fit_method("msfa", folder)
"""


@pytest.mark.slow
def test_a_fit_killed_in_epoch_2_of_3_resumes_at_epoch_2_and_predicts_as_an_uninterrupted_one(uninterrupted, tmp_path, caplog):
    folder = tmp_path / "work"
    folder.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_FIT.format(test_dir=str(TEST_DIR))), str(folder)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (folder / "in-epoch-2").exists():
            assert child.poll() is None, f"the fit ended before epoch 2: {child.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "the fit did not reach epoch 2 in 5 minutes"
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.stderr.close()
    saved = torch.load(folder / RESUME_FOLDER / STATE_FILE, weights_only=True)
    assert saved["current"]["epochs_done"] == 1 and saved["stages"] == []
    with caplog.at_level(logging.INFO):
        method, probs = fit_method("msfa", folder)
    assert "resuming msfa at epoch 2/3" in caplog.text
    assert same_weights(weights_of(method), uninterrupted("msfa")[0])
    np.testing.assert_array_equal(probs, uninterrupted("msfa")[1])
    assert not (folder / RESUME_FOLDER).exists()
