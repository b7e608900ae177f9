"""One training stage: epochs of SGD steps, a validation score after each, early stopping, best-weights restore.

Methods call `train_stage` once per stage (twice for two-phase fine-tuning). The stage keeps
the weights of its best validation epoch and restores them at the end, so a method is always
selected on validation data, never on test data.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss, roc_auc_score
from torch import nn
from tqdm import tqdm

from .data import batch_to_device
from .finetune import keep_frozen_norms_in_eval
from .predict import predict_probabilities
from .resume import FitResume

SCHEDULERS = ("none", "cosine", "plateau", "onecycle")
VAL_METRICS = ("balanced_accuracy", "accuracy", "macro_f1", "auc", "neg_log_loss")
BatchLoss = Callable[[nn.Module, dict], torch.Tensor]


@dataclass(frozen=True)
class StageSettings:
    """How long a stage runs and how its learning rate moves."""

    epochs: int
    patience: int | None = None  # epochs without improvement before stopping; None: run every epoch
    scheduler: str = "none"  # cosine: annealed per epoch over `epochs`; plateau: x factor when val stalls;
    # onecycle: per batch, warm-up from lr/25 to the optimiser's lr over `warmup_fraction` of all steps, then cosine to ~0
    plateau_factor: float = 0.1
    plateau_patience: int = 2
    min_lr: float = 0.0
    min_delta: float = 0.0  # a val score must beat the best by more than this to count as better
    warmup_fraction: float = 0.3

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler {self.scheduler!r}: choose one of {SCHEDULERS}")
        if self.epochs < 1:
            raise ValueError("a stage needs at least one epoch")


@dataclass
class StageResult:
    best_score: float
    best_epoch: int  # 0-based; -1 when no epoch beat the stage's initial_score
    epochs_run: int
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, train_loss, val_score, lr, seconds


def score_probabilities(probs: np.ndarray, targets: np.ndarray, metric: str) -> float:
    """A validation score, higher is better: balanced_accuracy | accuracy | macro_f1 | auc | neg_log_loss.

    `auc` is the binary AUC of column 1 for two columns, else the one-vs-rest macro AUC over
    the classes present; NaN when the targets hold a single class.
    """
    predicted = probs.argmax(axis=1)
    if metric == "balanced_accuracy":
        return float(balanced_accuracy_score(targets, predicted))
    if metric == "accuracy":
        return float(accuracy_score(targets, predicted))
    if metric == "macro_f1":
        return float(f1_score(targets, predicted, average="macro", labels=np.unique(targets), zero_division=0))
    if metric == "neg_log_loss":
        return -float(log_loss(targets, probs, labels=np.arange(probs.shape[1])))
    if metric == "auc":
        present = np.unique(targets)
        if len(present) < 2:
            return math.nan
        if probs.shape[1] == 2:
            return float(roc_auc_score(targets, probs[:, 1]))
        scores = probs[:, present] / probs[:, present].sum(axis=1, keepdims=True)
        return float(roc_auc_score(targets, scores if len(present) > 2 else scores[:, 1], multi_class="ovr", labels=present))
    raise ValueError(f"unknown validation metric {metric!r}; choose one of {VAL_METRICS}")


def validator(
    images: np.ndarray,
    targets: np.ndarray,
    metric: str,
    device: str | torch.device,
    batch_size: int = 64,
) -> Callable[[nn.Module], float]:
    """validate(network) -> the network's `metric` on these (validation) images."""
    if metric not in VAL_METRICS:
        raise ValueError(f"unknown validation metric {metric!r}; choose one of {VAL_METRICS}")

    def validate(network: nn.Module) -> float:
        return score_probabilities(predict_probabilities([network], images, device, batch_size), np.asarray(targets), metric)

    return validate


def _snapshot(network: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in network.state_dict().items()}


def train_stage(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[dict] | Callable[[int], Iterable[dict]],
    batch_loss: BatchLoss,
    validate: Callable[[nn.Module], float],
    settings: StageSettings,
    device: str | torch.device,
    *,
    name: str = "train",
    progress: bool = True,
    logger: logging.Logger | None = None,
    checkpoint_path: Path | None = None,
    initial_score: float | None = None,
    resume: FitResume | None = None,
    stateful: dict[str, Any] | None = None,
) -> StageResult:
    """Train `network` for up to `settings.epochs`, keep the best validation epoch's weights.

    `batches` is a DataLoader (re-iterated each epoch) or `epoch -> iterable` (for curricula
    that change the order by epoch). Each batch goes through `batch_to_device` (adds the
    normalised `inputs`) and then `batch_loss(network, batch) -> scalar loss`. `validate`
    returns a score, higher is better; the first epoch is always taken as the best so far
    (a NaN score, e.g. AUC on one-class data, never beats it) unless `initial_score` gives the
    score of the weights the stage starts from (the previous stage's best): then the stage
    returns to those weights when no epoch beats it. `checkpoint_path` keeps the best weights
    on disk as well.

    With `resume` (the fit's resume folder) the stage saves its whole state at an epoch end (at
    most once a minute by default: resume.py) and continues from an earlier run's save: skipped when that run finished it, else from the
    epoch after its last saved one. `stateful` names the method's own objects that an epoch
    changes (state_dict() / load_state_dict()), e.g. a curriculum's record of losses.
    """
    logger = logger or logging.getLogger("benchbox.training")
    stateful = stateful or {}
    stage = None if resume is None else resume.stage(name)
    if stage is not None and stage.finished is not None:
        finished = stage.restore_finished(network, batches, stateful)
        if finished is not None:
            return StageResult(**finished)
    scheduler: object | None = None
    if settings.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs, eta_min=settings.min_lr)
    elif settings.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=settings.plateau_factor, patience=settings.plateau_patience, min_lr=settings.min_lr
        )
    elif settings.scheduler == "onecycle":
        if callable(batches):
            raise ValueError(f"{name}: the onecycle scheduler needs a loader of fixed length, not batches by epoch")
        steps = settings.epochs * len(batches) + 1  # + the step after the last batch, which lands on the floor
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[group["lr"] for group in optimizer.param_groups], total_steps=steps,
            pct_start=settings.warmup_fraction, cycle_momentum=False,  # only the learning rate moves
        )
    per_batch = settings.scheduler == "onecycle"
    best_score, best_epoch, best_state = -math.inf, -1, None
    if initial_score is not None and math.isfinite(initial_score):
        best_score, best_state = initial_score, _snapshot(network)
    history: list[dict] = []
    start, stopped = 0, False
    if stage is not None and stage.saved is not None:
        saved = stage.restore_epoch(network, optimizer, scheduler, batches, stateful)
        if saved is not None:
            start, stopped, history = saved["epochs_done"], saved["stopped"], list(saved["history"])
            best_score, best_epoch = saved["best_score"], saved["best_epoch"]
            best_state = _snapshot(network) if saved["best_state"] is None else saved["best_state"]
    if stage is not None:
        stage.announce(start, settings.epochs)
    for epoch in range(start, start if stopped else settings.epochs):
        started = time.perf_counter()
        network.train()
        keep_frozen_norms_in_eval(network)
        epoch_batches = batches(epoch) if callable(batches) else batches
        losses = []
        bar = tqdm(epoch_batches, desc=f"{name} epoch {epoch + 1}/{settings.epochs}", leave=False, disable=not progress)
        for batch in bar:
            loss = batch_loss(network, batch_to_device(batch, device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{name}: the loss became {loss.item()} in epoch {epoch + 1}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if per_batch:
                scheduler.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        score = validate(network)
        lr = optimizer.param_groups[0]["lr"]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(score if math.isfinite(score) else -math.inf)
        elif scheduler is not None and not per_batch:
            scheduler.step()
        improved = best_state is None or score > best_score + settings.min_delta
        if improved:
            best_score, best_epoch, best_state = score, epoch, _snapshot(network)
            if checkpoint_path is not None:
                checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(best_state, checkpoint_path)
        history.append(
            {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else math.nan, "val_score": score,
             "lr": lr, "seconds": time.perf_counter() - started}
        )  # fmt: skip
        logger.info("%s epoch %d/%d: loss %.4f, val %.4f%s, %.0f s", name, epoch + 1, settings.epochs,
                    history[-1]["train_loss"], score, " (best)" if improved else "", history[-1]["seconds"])  # fmt: skip
        stop = settings.patience is not None and epoch - best_epoch >= settings.patience
        if stage is not None:  # reads states only: draws nothing, so an uninterrupted fit is unchanged
            stage.save_epoch(epochs_done=epoch + 1, stopped=stop, network=network, optimizer=optimizer, scheduler=scheduler,
                             best_score=best_score, best_epoch=best_epoch, best_state=None if best_epoch == epoch else best_state,
                             history=history, batches=batches, stateful=stateful)  # fmt: skip
        if stop:
            break
    network.load_state_dict(best_state)
    result = StageResult(best_score=best_score, best_epoch=best_epoch, epochs_run=len(history), history=history)
    if stage is not None:
        stage.finish(network, asdict(result), batches, stateful)
    return result
