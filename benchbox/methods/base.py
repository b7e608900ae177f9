"""The one interface every hosted method implements, and the run context the harness hands it."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..data.arrays import ImageSet
from ..labels import BINARY_CLASSES, CLASSES

TASKS = ("multiclass", "binary")


@dataclass
class RunContext:
    """What the harness gives a method for one fit: where, how big, how random, how to report."""

    profile: str = "quick"  # smoke | quick | paper
    seed: int = 0
    device: str = "cpu"  # "cpu" or "cuda[:N]", already resolved by the harness
    checkpoint_dir: Path | None = None  # a private folder for intermediate checkpoints
    pretrained: bool = False  # load ImageNet weights (paper profile) or train from scratch
    weights_dir: Path | None = None  # local folder of pretrained weights, used before any hub
    settings: dict[str, Any] = field(default_factory=dict)  # this profile's settings from the card
    progress: bool = True  # show tqdm bars
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("benchbox.method"))


class Method(ABC):
    """A lesion classifier hosted by benchbox.

    Class attributes declare what the harness needs before training: `name`, `task`
    ("multiclass": 7 classes of `CLASSES`; "binary": `BINARY_CLASSES`, column 1 = malignant),
    `explainers` (names accepted by `explain`), `needs_masks` (fit requires lesion masks).
    Images are always uint8 N x H x W x 3 at `input_size(profile)`; the harness resizes.
    """

    name: ClassVar[str]
    task: ClassVar[str]
    explainers: ClassVar[tuple[str, ...]] = ()
    needs_masks: ClassVar[bool] = False

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASSES if self.task == "multiclass" else BINARY_CLASSES

    @abstractmethod
    def fit(self, train: ImageSet, val: ImageSet, ctx: RunContext) -> None:
        """Train on `train`; use `val` only for early stopping, model selection and thresholds."""

    @abstractmethod
    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """N x len(classes) float probabilities whose rows sum to 1."""

    @abstractmethod
    def explain(self, images: np.ndarray, targets: np.ndarray, explainer: str) -> np.ndarray:
        """N x H x W float maps in [0, 1] at the input's resolution, one per (image, target class)."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write state dicts + a small settings JSON (no pickled code)."""

    @abstractmethod
    def load(self, directory: Path) -> None:
        """Restore what `save` wrote (torch.load with weights_only=True)."""

    def networks(self) -> list:
        """The torch modules of the deployed predictor (for parameter counts); override."""
        return []

    def predicted_masks(self, images: np.ndarray) -> np.ndarray | None:
        """N x H x W boolean lesion masks for methods that segment; None for the rest."""
        return None

    def operating_threshold(self) -> float | None:
        """The binary decision threshold chosen on validation, if the method chooses one."""
        return None
