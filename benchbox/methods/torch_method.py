"""The shared body of methods whose predictor is one or more torch networks.

A subclass (declared by its card, or by `Method`'s class attributes) implements `build_network(settings)`
and `fit`, and names its CAM layers; prediction (with ensembles and test-time augmentation),
explanation, checkpoints and the pretrained-weights check come from here.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch import nn

import torch

from .. import __version__
from ..data.arrays import ImageSet
from ..errors import BenchboxError
from ..explain.maps import keep_top_fraction
from ..training.checkpoint import load_checkpoint, save_checkpoint
from ..training.data import check_images, model_inputs
from ..training.predict import predict_probabilities
from ..training.pretrained import pretrained_state_dict
from ..training.recipes import limit_images
from ..training.resume import FitResume, fit_identity
from ..training.runtime import seed_everything
from .base import Method, RunContext


class TorchMethod(Method):
    """A Method made of `members(settings)` torch networks that map normalised images to logits.

    Settings read here: `input_size`, `max_train_images` / `max_val_images` (none),
    `eval_batch_size` (64), `tta` (views averaged at
    prediction, default ["identity"]), `cam_layer` (the dotted path of the layer Grad-CAM reads,
    in place of `cam_target_layers`: the small profiles' inputs leave the last layer a 2 x 2 map,
    too coarse to localise anything), `cam_top_fraction` (sharpen every map to its top
    fraction of pixels), `smoothgrad_samples` (25), `smoothgrad_noise` (0.15).
    """

    pretrained_archs: ClassVar[tuple[str, ...]] = ()  # the backbones whose ImageNet weights `fit` loads

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}
        self.nets: list[nn.Module] = []
        self.device = "cpu"
        self.fit_resume: FitResume | None = None  # this fit's resume folder, between start_fit and finish_fit

    # --- what a subclass provides -------------------------------------------------------
    @abstractmethod
    def build_network(self, settings: dict[str, Any]) -> nn.Module:
        """One randomly initialised network for these settings, giving len(classes) logits."""

    def members(self, settings: dict[str, Any]) -> int:
        """How many networks the deployed predictor averages (an ensemble overrides this)."""
        return 1

    def cam_target_layers(self, network: nn.Module) -> list[nn.Module]:
        """The layers Grad-CAM / Grad-CAM++ read at the paper's input size (override for methods that offer them)."""
        raise NotImplementedError(f"{type(self).__name__} names no CAM target layers")

    def cam_layers(self, network: nn.Module) -> list[nn.Module]:
        """The layers Grad-CAM reads in this profile: the card's `cam_layer` where it names one, else `cam_target_layers`."""
        path = self.settings.get("cam_layer")
        if path is None:
            return self.cam_target_layers(network)
        try:
            return [network.get_submodule(str(path))]
        except AttributeError:
            raise BenchboxError(f"method {self.name!r}: cam_layer {path!r} is not a layer of its network; "
                                f"name one of {type(network).__name__}.named_modules() in registry/{self.name}.yaml.") from None

    def extra_state(self) -> dict[str, Any]:
        """JSON-able state besides the weights (e.g. a chosen threshold); saved with the checkpoint."""
        return {}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what `extra_state` returned."""

    # --- shared body ----------------------------------------------------------------------
    def build(self, settings: dict[str, Any]) -> None:
        self.settings = copy.deepcopy(dict(settings))
        self.nets = [self.build_network(self.settings).to(self.device) for _ in range(self.members(self.settings))]

    def validate(self, ctx: RunContext) -> None:
        """Settings carry an input size; pretrained weights, when asked for, can be had now."""
        if "input_size" not in ctx.settings:
            raise BenchboxError(f"method {self.name!r}: the run context's settings lack input_size; build it with MethodCard.context().")
        if ctx.pretrained:
            for arch in self.pretrained_archs:
                pretrained_state_dict(arch, ctx.weights_dir)

    def start_fit(self, train: ImageSet, val: ImageSet, ctx: RunContext) -> tuple[ImageSet, ImageSet]:
        """The first lines of every fit: validate, seed, pick the device, build the networks, open the resume folder.

        Returns train and val cut to the settings' `max_train_images` / `max_val_images` (the
        smoke profile's small data volume); other profiles use all images. With a checkpoint
        folder, `self.fit_resume` holds what an interrupted run of this same fit saved; pass it
        to every `train_stage` and end the fit with `finish_fit`.
        """
        self.validate(ctx)
        seed_everything(ctx.seed)
        self.device = ctx.device
        self.build(ctx.settings)
        identity = None if ctx.checkpoint_dir is None else self.resume_identity(train, val, ctx)
        self.fit_resume = None if identity is None else FitResume.open(ctx.checkpoint_dir, identity, self.name, ctx.logger)
        return (
            limit_images(train, ctx.settings.get("max_train_images"), ctx.seed),
            limit_images(val, ctx.settings.get("max_val_images"), ctx.seed),
        )

    def resume_identity(self, train: ImageSet, val: ImageSet, ctx: RunContext) -> str:
        """What a resume state must have been saved under: the fit key, the method and its settings, code, data, device."""
        from ..runner.provenance import source_hash  # the code hash the harness's fit key uses too

        description = {
            "fit_key": ctx.fit_key, "method": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "profile": ctx.profile, "seed": ctx.seed, "settings": ctx.settings, "pretrained": ctx.pretrained,
            "weights_dir": None if ctx.weights_dir is None else str(ctx.weights_dir), "device": torch.device(ctx.device).type,
            "code": source_hash(), "benchbox": __version__, "torch": torch.__version__,
        }  # fmt: skip
        return fit_identity(description, [train, val])

    def finish_fit(self) -> None:
        """The last line of every fit: training is over, so its resume folder goes (the final checkpoint is saved as before)."""
        if self.fit_resume is not None:
            self.fit_resume.close()
            self.fit_resume = None

    @staticmethod
    def stage_checkpoint(ctx: RunContext, stage: str) -> Path | None:
        """Where a training stage keeps its best weights: the run's checkpoint folder, if it gave one."""
        return None if ctx.checkpoint_dir is None else Path(ctx.checkpoint_dir) / f"{stage}.pt"

    def to(self, device: str) -> None:
        self.device = device
        self.nets = [net.to(device) for net in self.nets]

    def networks(self) -> list[nn.Module]:
        return list(self.nets)

    def _check_ready(self) -> None:
        if not self.nets:
            raise BenchboxError(f"method {self.name!r} has no trained networks; call fit or load first.")

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        self._check_ready()
        return predict_probabilities(
            self.nets,
            check_images(images),
            self.device,
            int(self.settings.get("eval_batch_size", 64)),
            tuple(self.settings.get("tta", ["identity"])),
        )

    def explain(self, images: np.ndarray, targets: np.ndarray, explainer: str) -> np.ndarray:
        """Each network's maps for the target classes, averaged over networks, then optionally sharpened."""
        self._check_ready()
        if explainer not in self.explainers:
            raise BenchboxError(f"method {self.name!r} has no explainer {explainer!r}; it offers {list(self.explainers)}.")
        targets = np.asarray(targets, dtype=np.int64)
        if len(targets) != len(images) or targets.min(initial=0) < 0 or targets.max(initial=0) >= len(self.classes):
            raise ValueError(f"need one target in [0, {len(self.classes)}) per image, got {targets.shape} for {len(images)} images")
        inputs = model_inputs(images, self.device)
        maps = np.mean([self.explain_network(net, inputs, targets, explainer) for net in self.nets], axis=0)
        fraction = self.settings.get("cam_top_fraction")
        return maps.astype(np.float32) if fraction is None else keep_top_fraction(maps, float(fraction))

    def explain_network(self, network: nn.Module, inputs, targets: np.ndarray, explainer: str) -> np.ndarray:
        """N x H x W maps in [0, 1] of one network; Grad-CAM, Grad-CAM++ and SmoothGrad here, override for more."""
        if explainer in ("gradcam", "gradcam++"):
            from ..explain.cam import cam_maps

            return cam_maps(network, self.cam_layers(network), inputs, targets, kind=explainer)
        if explainer == "smoothgrad":
            from ..explain.smoothgrad import smoothgrad_maps

            return smoothgrad_maps(
                network, inputs, targets,
                n_samples=int(self.settings.get("smoothgrad_samples", 25)),
                noise_level=float(self.settings.get("smoothgrad_noise", 0.15)),
                seed=0,
            )  # fmt: skip
        raise NotImplementedError(f"{type(self).__name__} declares explainer {explainer!r} but does not implement it")

    def save(self, directory: Path) -> None:
        self._check_ready()
        info = {"method": self.name, "task": self.task, "settings": self.settings, "state": self.extra_state(), "benchbox": __version__}
        save_checkpoint(directory, {f"network_{i}": net.state_dict() for i, net in enumerate(self.nets)}, info)

    def load(self, directory: Path) -> None:
        states, info = load_checkpoint(directory)
        if info.get("method") != self.name:
            raise BenchboxError(f"{directory} holds a checkpoint of method {info.get('method')!r}, not {self.name!r}.")
        self.build(info["settings"])
        if len(states) != len(self.nets):
            raise BenchboxError(f"{directory} holds {len(states)} networks; {self.name!r} with these settings has {len(self.nets)}.")
        for i, net in enumerate(self.nets):
            try:
                net.load_state_dict(states[f"network_{i}"])
            except (KeyError, RuntimeError) as error:
                raise BenchboxError(f"{directory}: network_{i} does not fit {self.name!r}: {error}") from error
        self.set_extra_state(info.get("state") or {})
