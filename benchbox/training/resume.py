"""Resume inside a fit: each training stage's state at every epoch end, in a folder a re-run continues from.

A paper-profile fit takes hours, and a killed one used to start again at epoch 0. `train_stage`
saves, after every epoch, everything that decides the rest of the fit: weights, optimiser,
scheduler, loader position, the Python/numpy/torch RNG states, best-so-far, the method's own
per-epoch state, and which stage (phase, ensemble member) it is in. A re-run of the same fit
continues from there and reaches the same final weights as an uninterrupted fit on the same
machine. The folder is keyed by the fit's identity; a foreign or damaged one is ignored and
removed, never trusted. Files are read with `weights_only=True`, so a state file runs no code.

Layout of `<checkpoint_dir>/resume/`: `state.pt` (rewritten atomically at an epoch end) and
`stage-<i>.pt`, the final weights of each finished stage (written once, when it finishes).

How often: a state is written at an epoch end once SAVE_EVERY_S seconds have passed since the last
write ($BENCHBOX_RESUME_EVERY_S; 0 = every epoch). A ResNet50's state (weights, AdamW moments,
best weights) is 377 MB and takes 1-2 s to write on the project's CPU machine, as long as a
quarter of a smoke epoch; a minute bounds the work a kill can lose, and a resume from an older
epoch still ends at the same weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data.arrays import ImageSet
from ..errors import BenchboxError
from ..paths import atomic_write
from .data import loader_state, restore_loader

RESUME_FOLDER = "resume"
STATE_FILE = "state.pt"
FORMAT = 1
SAVE_EVERY_S = 60.0
EPOCH_KEYS = ("index", "name", "epochs_done", "stopped", "network", "optimizer", "scheduler", "best_score",
              "best_epoch", "best_state", "history", "loader", "extras", "rng")  # fmt: skip
FINISHED_KEYS = ("index", "name", "result", "loader", "extras", "rng", "file")


def fit_identity(description: dict[str, Any], data: Sequence[ImageSet]) -> str:
    """sha256 of what decides a fit: `description` (JSON-able settings, seed, code...) and the images it trains on."""
    digest = hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode())
    for part in data:
        digest.update("\0".join(str(i) for i in part.image_ids).encode())
        for array in (part.labels, part.groups, part.images, part.masks):
            if array is None:
                digest.update(b"none")
                continue
            array = np.asarray(array)
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).data if array.dtype != object else "\0".join(map(str, array.ravel())).encode())
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    """The global Python, numpy and torch (CPU and, when in use, CUDA) generator states; reading them draws nothing."""
    name, key, position, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, key.tolist(), position, has_gauss, cached), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    name, key, position, has_gauss, cached = state["numpy"]
    random.setstate(state["python"])
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)


def _state_dict_fits(saved: Any, network: nn.Module) -> bool:
    """Whether a saved state dict has exactly the network's keys, shapes and dtypes (checked before loading)."""
    own = network.state_dict()
    return (
        isinstance(saved, dict)
        and saved.keys() == own.keys()
        and all(isinstance(v, torch.Tensor) and v.shape == own[k].shape and v.dtype == own[k].dtype for k, v in saved.items())
    )


def _read(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def _problem(state: Any, identity: str, method: str) -> str | None:
    """Why a state file read from disk is not this fit's (None: it is, and it is well formed)."""
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return f"it is not a benchbox resume state of format {FORMAT}"
    if state.get("identity") != identity or state.get("method") != method:
        return "it belongs to another fit (another fit key, method, settings, data, code or device)"
    stages, current = state.get("stages"), state.get("current")
    if not isinstance(stages, list) or not all(isinstance(s, dict) and all(k in s for k in FINISHED_KEYS) for s in stages):
        return "its list of finished stages is malformed"
    if [s["index"] for s in stages] != list(range(len(stages))) or any(s["file"] != f"stage-{s['index']}.pt" for s in stages):
        return "its finished stages are not numbered in order"
    if current is not None and not (isinstance(current, dict) and all(k in current for k in EPOCH_KEYS) and current["index"] == len(stages)):
        return "its current stage is malformed"
    return None


class FitResume:
    """One fit's resume folder: what an interrupted earlier run of the same fit saved, and this run's saves.

    Stages are numbered in the order the fit calls `train_stage`; a re-run calls them in the
    same order, skips the finished ones (restoring their end state) and continues the one in
    progress at the epoch after its last saved one.
    """

    def __init__(self, folder: Path, identity: str, method: str, logger: logging.Logger | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / STATE_FILE
        self.identity, self.method = identity, method
        self.logger = logger or logging.getLogger("benchbox.training")
        self.finished: list[dict[str, Any]] = []  # records of finished stages, restored ones first
        self.current: dict[str, Any] | None = None  # the saved epoch state of the stage in progress
        self.weights: dict[int, dict[str, torch.Tensor]] = {}  # finished stages' final weights, until restored
        self.next_index = 0
        self.every_s = float(os.environ.get("BENCHBOX_RESUME_EVERY_S", SAVE_EVERY_S))
        self.last_write = time.monotonic()  # the fit starts from what was saved (or from scratch) now
        self.restored = False  # something of an earlier run was restored (so a mismatch found later cannot start over)
        self.unannounced = False  # ... and the next stage that trains has not yet logged where the fit resumes
        self._read_saved()

    @classmethod
    def open(cls, checkpoint_dir: Path | None, identity: str, method: str, logger: logging.Logger | None = None) -> FitResume | None:
        """The resume folder inside a fit's checkpoint folder; None (no resuming) when the fit has no such folder."""
        return None if checkpoint_dir is None else cls(Path(checkpoint_dir) / RESUME_FOLDER, identity, method, logger)

    def _read_saved(self) -> None:
        if not self.path.exists():
            shutil.rmtree(self.folder, ignore_errors=True)  # stage files without a state: nothing to continue
            return
        try:
            state = _read(self.path)
            problem = _problem(state, self.identity, self.method)
            if problem is None:
                for record in state["stages"]:
                    stage = _read(self.folder / record["file"])
                    if not (isinstance(stage, dict) and stage.get("identity") == self.identity and stage.get("index") == record["index"]
                            and isinstance(stage.get("weights"), dict)):  # fmt: skip
                        problem = f"{record['file']} does not hold stage {record['index']} of this fit"
                        break
                    self.weights[record["index"]] = stage["weights"]
        except Exception as error:  # any unreadable file is damaged: never trusted, never fatal
            problem = f"it cannot be read ({type(error).__name__}: {error})"
        if problem is not None:
            self.discard(problem)
            return
        self.finished, self.current = list(state["stages"]), state["current"]

    def discard(self, reason: str) -> None:
        """Forget and remove what an earlier run saved, saying why; the fit trains from scratch."""
        self.logger.warning("ignoring the resume state in %s: %s; training %s from scratch", self.folder, reason, self.method)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.finished, self.current, self.weights = [], None, {}

    def stage(self, name: str) -> StageResume:
        """The next stage of this fit (called by `train_stage` as it starts)."""
        index = self.next_index
        self.next_index += 1
        if index < len(self.finished):
            saved_name = self.finished[index]["name"]
            if saved_name == name:
                return StageResume(self, index, name, finished=self.finished[index])
        else:
            current, self.current = self.current, None  # handed to this stage only
            if current is None or current["name"] == name:
                return StageResume(self, index, name, saved=current)
            saved_name = current["name"]
        reason = f"stage {index + 1} of the saved fit is {saved_name!r}, this fit's is {name!r}"
        if self.restored:  # earlier stages were already taken from the folder: no clean start is left
            raise BenchboxError(f"the resume state in {self.folder} does not match this fit ({reason}); delete that folder and re-run.")
        self.discard(reason)
        return StageResume(self, index, name)

    def write(self, current: dict[str, Any] | None) -> None:
        state = {"format": FORMAT, "identity": self.identity, "method": self.method, "stages": self.finished, "current": current}
        atomic_write(self.path, lambda tmp: torch.save(state, tmp))
        self.last_write = time.monotonic()

    def due(self) -> bool:
        """Whether an epoch end should write the state (every_s since the last write)."""
        return time.monotonic() - self.last_write >= self.every_s

    def close(self) -> None:
        """The fit is done: remove the folder (the method's final checkpoint is written elsewhere)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.finished, self.current, self.weights = [], None, {}


def _restore_parts(record: dict[str, Any], batches: Any, stateful: dict[str, Any], logger: logging.Logger, name: str) -> None:
    """Loader position, the method's own state and the RNG states (last: nothing may draw after them)."""
    if isinstance(batches, DataLoader) and record["loader"] is not None:
        inexact = restore_loader(batches, record["loader"])
        if inexact:
            logger.warning("resuming %s: the loader cannot be restored exactly (%s); the result will differ from an "
                           "uninterrupted fit's", name, inexact)  # fmt: skip
    for key, part in stateful.items():
        part.load_state_dict(record["extras"][key])
    set_rng_state(record["rng"])


def _capture_parts(batches: Any, stateful: dict[str, Any]) -> dict[str, Any]:
    return {
        "loader": loader_state(batches) if isinstance(batches, DataLoader) else None,
        "extras": {key: part.state_dict() for key, part in stateful.items()},
        "rng": rng_state(),
    }


class StageResume:
    """One stage's view of the resume folder: finished before, in progress, or new; and its saves."""

    def __init__(self, fit: FitResume, index: int, name: str, finished: dict | None = None, saved: dict | None = None) -> None:
        self.fit, self.index, self.name = fit, index, name
        self.finished = finished  # the record of this stage when an earlier run finished it
        self.saved = saved  # this stage's last saved epoch state when an earlier run was inside it

    def _restored(self) -> None:
        self.fit.restored = self.fit.unannounced = True

    def _unusable(self, reason: str) -> None:
        """A saved part does not fit this stage's objects: start over if nothing was restored yet, else stop."""
        if self.fit.restored:
            raise BenchboxError(f"the resume state in {self.fit.folder} does not fit {self.name!r} ({reason}); delete that folder and re-run.")
        self.fit.discard(reason)
        self.finished = self.saved = None

    def restore_finished(self, network: nn.Module, batches: Any, stateful: dict[str, Any]) -> dict[str, Any] | None:
        """Put the network, loader, method state and RNG where this stage left them; returns its result (a dict)."""
        weights = self.fit.weights.pop(self.index)
        if not _state_dict_fits(weights, network) or set(self.finished["extras"]) != set(stateful):
            self._unusable(f"stage {self.index + 1}'s weights or state do not fit this fit's")
            return None
        network.load_state_dict(weights)
        _restore_parts(self.finished, batches, stateful, self.fit.logger, self.name)
        self._restored()
        self.fit.logger.info("resuming %s: %s was finished by an earlier run", self.fit.method, self.name)
        return self.finished["result"]

    def restore_epoch(self, network: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, batches: Any,
                      stateful: dict[str, Any]) -> dict[str, Any] | None:  # fmt: skip
        """Put everything where the last saved epoch left it; returns the saved bookkeeping (epochs done, best, history)."""
        saved = self.saved
        if not _state_dict_fits(saved["network"], network) or (saved["best_state"] is not None and not _state_dict_fits(saved["best_state"], network)):
            self._unusable("the saved weights do not fit the network")
            return None
        if (scheduler is None) != (saved["scheduler"] is None) or set(saved["extras"]) != set(stateful):
            self._unusable("the saved learning-rate schedule or method state is not this stage's")
            return None
        try:
            optimizer.load_state_dict(saved["optimizer"])
        except (ValueError, KeyError) as error:
            self._unusable(f"the saved optimiser does not fit: {error}")
            return None
        network.load_state_dict(saved["network"])
        if scheduler is not None:
            scheduler.load_state_dict(saved["scheduler"])
        _restore_parts(saved, batches, stateful, self.fit.logger, self.name)
        self._restored()
        return saved

    def announce(self, epochs_done: int, epochs: int) -> None:
        """Log where the fit resumes, once, at the first stage that trains after a restore."""
        if self.fit.unannounced:
            if epochs_done < epochs:
                self.fit.logger.info("resuming %s at epoch %d/%d", self.name, epochs_done + 1, epochs)
            else:
                self.fit.logger.info("resuming %s after its last epoch (%d/%d)", self.name, epochs, epochs)
            self.fit.unannounced = False

    def save_epoch(self, *, epochs_done: int, stopped: bool, network: nn.Module, optimizer: torch.optim.Optimizer,
                   scheduler: Any, best_score: float, best_epoch: int, best_state: dict | None, history: Iterable[dict],
                   batches: Any, stateful: dict[str, Any]) -> None:  # fmt: skip
        """Write the stage's state at an epoch end when one is due; `best_state` None means "the current weights"."""
        if not self.fit.due():
            return
        self.fit.write({
            "index": self.index, "name": self.name, "epochs_done": epochs_done, "stopped": stopped,
            "network": network.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "best_score": best_score, "best_epoch": best_epoch, "best_state": best_state, "history": list(history),
            **_capture_parts(batches, stateful),
        })  # fmt: skip

    def finish(self, network: nn.Module, result: dict[str, Any], batches: Any, stateful: dict[str, Any]) -> None:
        """Record the finished stage: its final weights once, in their own file, and its result in the state."""
        file = f"stage-{self.index}.pt"
        weights = {key: value.detach().cpu() for key, value in network.state_dict().items()}
        stage = {"format": FORMAT, "identity": self.fit.identity, "index": self.index, "name": self.name, "weights": weights}
        atomic_write(self.fit.folder / file, lambda tmp: torch.save(stage, tmp))
        self.fit.finished.append({"index": self.index, "name": self.name, "result": result, "file": file,
                                  **_capture_parts(batches, stateful)})  # fmt: skip
        self.fit.write(None)
