"""`dual_task`: lesion segmentation and 7-class classification on one shared encoder (Fiaz et al.).

Architecture: a segmentation-models-pytorch U-Net whose EfficientNet-B0 encoder is shared by
the U-Net decoder (one-channel lesion mask at input resolution) and a classification head on
the deepest encoder features (global average pool, dropout, linear, 7 classes: smp's
`aux_params` head). `forward(x)` runs encoder + head only and returns the class logits (what
prediction and Grad-CAM use); `segment(x)` returns the mask logits; `both(x)` gives both from
one encoder pass for training. Loss per image = dice_weight x soft Dice + bce_weight x BCE on
the mask + ce_weight x CE on the class, averaged over the batch; Adam, cosine annealing, early
stopping. Explained by Grad-CAM on the encoder's last stage (320 channels, stride 32).
`predicted_masks` thresholds the mask probabilities at `mask_threshold` (0.5).

How the paper was read where it is vague:
- Encoder: timm's `tf_efficientnet_b0` through smp's "tu-" adapter. It is EfficientNet-B0 with
  the original (TensorFlow) ImageNet weights, which Keras and smp's own "efficientnet-b0"
  encoder also load; timm's plain `efficientnet_b0` name would also match torchvision's model,
  whose weights have other parameter names.
- "Common/easy first" is read as a class-frequency curriculum (Dynamic Curriculum Learning,
  Wang et al. 2019): in epoch e of E, class c gets a share of the epoch's images proportional
  to n_c ** g(e), g falling linearly from 1 (the natural distribution, dominated by the common
  classes, each image once) to 0 (class-balanced, rare images repeated, common ones
  subsampled) at the last epoch. "Easy" means "of a common class", which needs no warm-up
  model; per-image difficulty is measured, and used by the replay below.
- Stochastic hard-example replay: every image's loss is recorded whenever it is trained on
  (under augmentation, before the step). From the second epoch on, `replay_fraction` of the
  epoch's slots are images drawn uniformly at random, with replacement, from the
  `replay_pool` fraction of images with the highest recorded loss; the rest of the epoch
  follows the curriculum, and the whole epoch is shuffled. An epoch has as many images as the
  training set.
- Model selection: the paper trains one model on both tasks, so the validation score is the
  mean of the classification score (`val_metric`, balanced accuracy) and the mean Dice of the
  predicted validation masks (equal weights, as in the loss).
- Grad-CAM IoU: the paper's 0.77 was measured against its own predicted masks; benchbox
  measures every explainer against ground-truth masks, so that claim is not comparable.
- The quick profile halves the decoder widths (128-64-32-16-8 instead of smp's 256-128-64-32-16,
  which costs five times the encoder's FLOPs) and trains at 64 px, where the last encoder stage,
  and so the Grad-CAM grid, is 2 x 2. The paper profile uses smp's default decoder at 224 px.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from ..data.arrays import ImageSet
from ..errors import BenchboxError
from ..labels import CLASSES
from ..metrics.segmentation import dice_iou
from ..training.data import ImageSetDataset, augmentation_from_settings, check_images, model_inputs, train_loader
from ..training.loop import train_stage, validator
from ..training.pretrained import load_pretrained, pretrained_state_dict
from ..training.recipes import stage_settings
from .base import RunContext
from .torch_method import TorchMethod

ENCODER = "tf_efficientnet_b0"  # timm name; smp reaches it as "tu-tf_efficientnet_b0"
UNET_STRIDE = 32  # the U-Net's input sides must be multiples of the encoder's total stride
DEFAULT_DECODER_CHANNELS = (256, 128, 64, 32, 16)  # smp's default


class DualTaskNetwork(nn.Module):
    """smp U-Net (mask) + classification head, both on one EfficientNet-B0 encoder."""

    def __init__(self, n_classes: int, decoder_channels: tuple[int, ...], dropout: float):
        super().__init__()
        # channels-last memory: the encoder's depthwise convolutions take ~15% less CPU time per step
        self.unet = smp.Unet(
            f"tu-{ENCODER}", encoder_weights=None, decoder_channels=decoder_channels, classes=1,
            aux_params={"classes": n_classes, "dropout": dropout},
        ).to(memory_format=torch.channels_last)  # fmt: skip

    @property
    def last_stage(self) -> nn.Module:
        """The encoder's deepest stage, whose output the classification head pools."""
        return self.unet.encoder.model.blocks[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, N x n_classes (encoder + head; the decoder is not run)."""
        return self.unet.classification_head(self.unet.encoder(x)[-1])

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """Mask logits, N x 1 x H x W."""
        return self.unet(x)[0]

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask logits, class logits) from one encoder pass."""
        return self.unet(x)


def soft_dice_loss(mask_logits: torch.Tensor, masks: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Per-image 1 - soft Dice (sum p*t form), shape N; the replay needs each image's loss.

    smp's DiceLoss pools the batch into one value and gives an empty true mask no loss; here
    `smooth` keeps an empty mask meaningful: predicting it empty costs ~0, anything else more.
    """
    probs, truth = torch.sigmoid(mask_logits).flatten(1), masks.flatten(1).float()
    return 1 - (2 * (probs * truth).sum(1) + smooth) / (probs.sum(1) + truth.sum(1) + smooth)


def dual_task_losses(
    mask_logits: torch.Tensor,
    class_logits: torch.Tensor,
    masks: torch.Tensor,
    targets: torch.Tensor,
    weights: tuple[float, float, float],
) -> torch.Tensor:
    """Per-image loss, shape N: dice_weight x Dice + bce_weight x BCE (pixel mean) + ce_weight x CE."""
    dice_weight, bce_weight, ce_weight = weights
    truth = masks.flatten(1).float()
    bce = F.binary_cross_entropy_with_logits(mask_logits.flatten(1), truth, reduction="none").mean(1)
    ce = F.cross_entropy(class_logits, targets, reduction="none")
    return dice_weight * soft_dice_loss(mask_logits, masks) + bce_weight * bce + ce_weight * ce


class CurriculumReplay:
    """Each epoch's list of training indices: a class-frequency curriculum plus hard-example replay.

    See the module docstring for the reading. `record` keeps each image's latest loss; `epoch_indices`
    must be called in epoch order, after the previous epoch's losses were recorded.
    """

    def __init__(self, targets: np.ndarray, epochs: int, replay_fraction: float, replay_pool: float, rng: np.random.Generator):
        if not 0 <= replay_fraction < 1 or not 0 < replay_pool <= 1:
            raise ValueError(f"need 0 <= replay_fraction < 1 and 0 < replay_pool <= 1, got {replay_fraction}, {replay_pool}")
        self.targets = np.asarray(targets)
        self.epochs = epochs
        self.replay_fraction = replay_fraction
        self.replay_pool = replay_pool
        self.rng = rng
        self.losses = np.full(len(self.targets), np.nan)

    def power(self, epoch: int) -> float:
        """g(epoch): 1 (natural class distribution) at the first epoch, 0 (balanced) at the last."""
        return 1.0 - epoch / max(self.epochs - 1, 1)

    def class_counts(self, epoch: int, n_slots: int) -> dict[int, int]:
        """Slots per present class, proportional to n_c ** g, rounded by largest remainder."""
        classes, counts = np.unique(self.targets, return_counts=True)
        mass = counts.astype(np.float64) ** self.power(epoch)
        share = mass / mass.sum() * n_slots
        slots = np.floor(share).astype(np.int64)
        slots[np.argsort(slots - share, kind="stable")[: n_slots - slots.sum()]] += 1
        return dict(zip(classes.tolist(), slots.tolist()))

    def hard_pool(self) -> np.ndarray:
        """Indices of the `replay_pool` fraction of seen images with the highest recorded loss."""
        seen = np.flatnonzero(np.isfinite(self.losses))
        size = int(np.ceil(self.replay_pool * len(seen)))
        return seen[np.argsort(-self.losses[seen], kind="stable")[:size]]

    def curriculum_indices(self, epoch: int, n_slots: int) -> np.ndarray:
        """`n_slots` indices, each class's slots filled from a fresh permutation of its images (cycled if short)."""
        parts = [np.resize(self.rng.permutation(np.flatnonzero(self.targets == c)), k) for c, k in self.class_counts(epoch, n_slots).items()]
        return np.concatenate(parts).astype(np.int64)

    def replay_indices(self, n: int) -> np.ndarray:
        """`n` draws, uniform with replacement, from the hard pool (none before any loss is recorded)."""
        pool = self.hard_pool()
        return self.rng.choice(pool, size=n, replace=True).astype(np.int64) if len(pool) else np.empty(0, np.int64)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """One epoch (as many indices as images): replays from the second epoch on, the curriculum for the rest."""
        n_slots = len(self.targets)
        replays = self.replay_indices(int(round(self.replay_fraction * n_slots))) if epoch > 0 else np.empty(0, np.int64)
        return np.concatenate([self.curriculum_indices(epoch, n_slots - len(replays)), replays])

    def record(self, indices: np.ndarray, losses: np.ndarray) -> None:
        self.losses[np.asarray(indices)] = np.asarray(losses, dtype=np.float64)

    def state_dict(self) -> dict:
        """What an epoch changes (the generator and the recorded losses), for resuming a fit; tensors and plain data only."""
        return {"rng": self.rng.bit_generator.state, "losses": torch.from_numpy(self.losses.copy())}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.losses = state["losses"].numpy().astype(np.float64, copy=True)


class DualTask(TorchMethod):  # name, task, explainers, needs_masks: registry/dual_task.yaml
    pretrained_archs = (ENCODER,)

    def build_network(self, settings: dict[str, Any]) -> nn.Module:
        channels = tuple(int(c) for c in settings.get("decoder_channels", DEFAULT_DECODER_CHANNELS))
        return DualTaskNetwork(len(CLASSES), channels, float(settings.get("dropout", 0.2)))

    def cam_target_layers(self, network: nn.Module) -> list[nn.Module]:
        return [network.last_stage]

    def validate(self, ctx: RunContext) -> None:
        super().validate(ctx)
        if int(ctx.settings["input_size"]) % UNET_STRIDE:
            raise BenchboxError(
                f"method {self.name!r}: input_size {ctx.settings['input_size']} is not a multiple of {UNET_STRIDE}, "
                "which the U-Net needs; set a multiple of 32 in registry/dual_task.yaml."
            )

    @torch.no_grad()
    def _mask_probabilities(self, networks: list[nn.Module], images: np.ndarray) -> np.ndarray:
        """N x H x W float mask probabilities, averaged over networks."""
        batch_size = int(self.settings.get("eval_batch_size", 64))
        for network in networks:
            network.eval()
        chunks = []
        for start in range(0, len(images), batch_size):
            inputs = model_inputs(images[start : start + batch_size], self.device)
            total = sum(torch.sigmoid(network.segment(inputs)[:, 0].float()) for network in networks)
            chunks.append((total / len(networks)).cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, *images.shape[1:3]), np.float32)

    def predicted_masks(self, images: np.ndarray) -> np.ndarray:
        """N x H x W boolean lesion masks at the input resolution (mask probability > mask_threshold)."""
        self._check_ready()
        return self._mask_probabilities(self.nets, check_images(images)) > float(self.settings.get("mask_threshold", 0.5))

    def fit(self, train: ImageSet, val: ImageSet, ctx: RunContext) -> None:
        for part, data in (("train", train), ("val", val)):
            if data.masks is None:
                raise BenchboxError(
                    f"method {self.name!r} needs lesion masks and the {part} images have none (ImageSet.masks is None); "
                    "use a dataset with segmentation masks (HAM10000 with HAM10000_segmentations_lesion_tschandl/, "
                    "synthderm) or leave this method out."
                )
        train, val = self.start_fit(train, val, ctx)
        settings, network = self.settings, self.nets[0]
        if ctx.pretrained:
            load_pretrained(network.unet.encoder.model, pretrained_state_dict(ENCODER, ctx.weights_dir))
        stage = stage_settings(settings)
        schedule = CurriculumReplay(
            train.labels, stage.epochs, float(settings.get("replay_fraction", 0.2)), float(settings.get("replay_pool", 0.2)),
            np.random.default_rng(ctx.seed),
        )  # fmt: skip
        dataset = ImageSetDataset(train.images, train.labels, train.masks, augmentation_from_settings(settings))
        batch_size, workers = int(settings["batch_size"]), int(settings.get("num_workers", 0))

        def batches(epoch: int):
            return train_loader(dataset, batch_size, ctx.seed + epoch, schedule.epoch_indices(epoch), workers)

        weights = tuple(float(settings.get(key, 1.0)) for key in ("dice_weight", "bce_weight", "ce_weight"))

        def batch_loss(net: nn.Module, batch: dict) -> torch.Tensor:
            mask_logits, class_logits = net.both(batch["inputs"])
            losses = dual_task_losses(mask_logits, class_logits, batch["mask"], batch["target"], weights)
            schedule.record(batch["index"].cpu().numpy(), losses.detach().cpu().numpy())
            return losses.mean()

        classify = validator(val.images, val.labels, settings.get("val_metric", "balanced_accuracy"), ctx.device)

        def validate(net: nn.Module) -> float:
            dice = dice_iou(self._mask_probabilities([net], val.images) > float(settings.get("mask_threshold", 0.5)), val.masks)[0]
            return 0.5 * (classify(net) + float(np.nanmean(dice)))

        optimizer = torch.optim.Adam(network.parameters(), lr=float(settings["lr"]), weight_decay=float(settings.get("weight_decay", 0.0)))
        train_stage(network, optimizer, batches, batch_loss, validate, stage, ctx.device,
                    name=self.name, progress=ctx.progress, logger=ctx.logger,
                    resume=self.fit_resume, stateful={"curriculum": schedule})  # fmt: skip
        self.finish_fit()
