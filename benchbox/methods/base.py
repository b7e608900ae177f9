"""The one interface every hosted method implements, and the run context the harness hands it.

This module imports neither torch nor numpy, so the registry and `benchbox ls` can use it cheaply.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..labels import BINARY_CLASSES, CLASSES

if TYPE_CHECKING:  # only for annotations: listing methods must not pay for importing numpy
    import numpy as np

    from ..data.arrays import ImageSet

TASKS = ("multiclass", "binary")
PROFILES = ("smoke", "quick", "paper")


@dataclass
class RunContext:
    """What the harness gives a method for one fit: where, how big, how random, how to report.

    Build it with `MethodCard.context(profile, ...)`, which fills `settings` from the card and
    `pretrained` from the profile's default; `settings` always holds `input_size`.
    """

    profile: str = "quick"  # smoke | quick | paper
    seed: int = 0
    device: str = "cpu"  # "cpu" or "cuda[:N]", already resolved (benchbox.training.runtime.resolve_device)
    checkpoint_dir: Path | None = None  # a private folder for intermediate checkpoints (and the resume state)
    fit_key: str | None = None  # the harness's identity of this fit: a resume state saved under another is ignored
    pretrained: bool = False  # load ImageNet weights (paper profile) or train from scratch
    weights_dir: Path | None = None  # local folder of pretrained weights, used before any hub
    settings: dict[str, Any] = field(default_factory=dict)  # this profile's settings from the card
    progress: bool = True  # show tqdm bars
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("benchbox.method"))


class Method(ABC):
    """A lesion classifier hosted by benchbox.

    What the harness needs before training is declared once: `name`, `task` ("multiclass": 7
    classes of `CLASSES`; "binary": `BINARY_CLASSES`, column 1 = malignant), `explainers` (names
    accepted by `explain`), `needs_masks` (fit requires lesion masks). A method with a YAML card
    in `registry/` declares them there, and `MethodCard.create` sets them on the instance.
    Images are always uint8 N x H x W x 3 at the profile's `input_size`; the harness resizes.

    A method registered without a YAML card (a plugin entry point naming the class, or
    `@register_method` in a session) declares them as class attributes and carries the rest of
    its card in `card`: a dict with a YAML card's other keys (at least `profiles` with an
    `input_size` per profile).
    """

    name: str  # from the card (MethodCard.create), or a class attribute of a method without a YAML card
    task: str
    explainers: tuple[str, ...] = ()
    needs_masks: bool = False
    card: ClassVar[dict[str, Any] | None] = None
    # settings read only after training (e.g. how the operating threshold is chosen): a variant card
    # (`fit_of`) may change these and still share its base's trained model
    post_fit_settings: ClassVar[tuple[str, ...]] = ()

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASSES if self.task == "multiclass" else BINARY_CLASSES

    def validate(self, ctx: RunContext) -> None:
        """Check the context before any training (e.g. pretrained weights are at hand).

        Raise `BenchboxError` with what to do. The harness calls this for every job before it
        trains anything; `fit` calls it too. The default accepts every context.
        """

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

    def build(self, settings: dict[str, Any]) -> None:
        """Construct the untrained, randomly initialised networks for these profile settings.

        Lets `benchbox ls --params` count parameters at the paper input size without training.
        The default builds nothing (the count then shows as unknown).
        """

    def to(self, device: str) -> None:
        """Move the predictor to a device for predict/explain (e.g. after `load`, which loads on CPU)."""

    def networks(self) -> list:
        """The torch modules of the deployed predictor (for parameter counts); override."""
        return []

    def predicted_masks(self, images: np.ndarray) -> np.ndarray | None:
        """N x H x W boolean lesion masks for methods that segment; None for the rest."""
        return None

    @property
    def segments(self) -> bool:
        """Whether this method predicts lesion masks (overrides `predicted_masks`)."""
        return type(self).predicted_masks is not Method.predicted_masks

    def operating_threshold(self) -> float | None:
        """The binary decision threshold chosen on validation, if the method chooses one."""
        return None
