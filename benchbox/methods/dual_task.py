"""`dual_task`, `dual_task_unet_r34`: lesion segmentation and 7-class classification trained jointly (Fiaz et al. 2025).

The paper (Front. Med. 12:1681542) contradicts itself on the architecture, so two readings are
registered, each a name of its own:
- `dual_task` (class `DualTask`) follows Sec. 4.2 ("the encoder features are shared across
  both tasks", "EfficientNet-B0 is adopted as a lightweight yet effective backbone"), the
  abstract and Sec. 3 ("The features extracted by this backbone ... enriching the encoder
  representations that drive the segmentation module"): one segmentation-models-pytorch U-Net
  whose EfficientNet-B0 encoder feeds both the decoder (one-channel mask at input resolution)
  and a classification head on the deepest encoder features (smp's `aux_params` head: global
  average pool, dropout, linear). Encoder: timm's `tf_efficientnet_b0` through smp's "tu-"
  adapter: EfficientNet-B0 with the original (TensorFlow) ImageNet weights, which Keras and
  smp's own "efficientnet-b0" encoder also load (timm's plain `efficientnet_b0` has other weights).
- `dual_task_unet_r34` (class `DualTaskUNetR34`) follows Table 4 ("UNet-Resnet34 for
  segmentation, EfficientNet-B0 for classification"), Sec. 3 ("EfficientNet-B0 as the backbone
  of the classification head ..., while the segmentation branch is constructed on a U-Net
  architecture with a ResNet34 encoder") and Figure 3 (a U-Net path and an EfficientNet-B0
  path): smp's `Unet("resnet34")` for the mask and torchvision's EfficientNet-B0 (the paper
  names PyTorch and torchvision) for the class, two networks on the same image, trained
  together on the one composite loss by one optimiser. Grad-CAM reads the classifier.
Not registered: Sec. 3's third wording, a classification head on the ResNet34 encoder
("dual-task design built upon the ResNet34 encoder backbone"), contradicts "EfficientNet-B0 for
classification" in the abstract, Sec. 3, Sec. 4.2 and Table 4; the conclusion's "EfficientNet-B3
backbone" and Sec. 1.2's "multi-scale dilated U-Net" and benign/malignant classifier appear nowhere
else. The card lists every contradiction.

Both readings share the procedure (Sec. 3): loss per image = soft Dice loss of the mask +
cross-entropy of the class ("Dice Loss for segmentation and Cross-Entropy Loss for
classification"; no weights, no other term), averaged over the batch; Adam without weight
decay; in the paper profile 20 epochs at a constant learning rate, batch 16, 224 px, and the
epoch with the lowest validation loss (the same composite loss on the validation images) kept
("Overfitting is monitored by observing validation loss during each epoch"). `forward(x)` gives
the class logits (what prediction and Grad-CAM use), `segment(x)` the mask logits, `both(x)`
both; `predicted_masks` thresholds the mask probabilities at `mask_threshold` (0.5).

How the paper was read where it is vague:
- Learning rate: not given beyond "typical ranges for learning rates (1e-3-1e-5) ... were
  considered"; the paper profile takes 1e-4, the middle of that range (ImageNet fine-tuning).
- Dice loss per image (sum p*t soft Dice with smoothing 1), because the hard-example replay
  needs each image's loss; smp's `DiceLoss` pools the batch into one value.
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
- Grad-CAM IoU: the paper's 0.7736 was measured against its own predicted masks (and equals its
  segmentation IoU); benchbox measures every explainer against ground-truth masks, so that
  number is recorded as reported, not as a comparable claim.

CPU profiles (smoke, quick; the card says why): from scratch at 64 px, half-width decoders
(128-64-32-16-8; smp's default 256-128-64-32-16 costs five times the EfficientNet encoder's FLOPs),
a cosine schedule and selection on the mean of validation balanced accuracy and mean Dice, the
settings the CI baseline was measured with. The paper profile uses smp's default decoder at 224 px.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
import torchvision
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

ENCODER = "tf_efficientnet_b0"  # dual_task's shared encoder, timm name; smp reaches it as "tu-tf_efficientnet_b0"
SEGMENTATION_ENCODER = "resnet34"  # dual_task_unet_r34's U-Net encoder: smp's resnet34 = torchvision's layers without fc
CLASSIFIER = "efficientnet_b0"  # dual_task_unet_r34's classifier, torchvision's
UNET_STRIDE = 32  # the U-Net's input sides must be multiples of the encoder's total stride
DEFAULT_DECODER_CHANNELS = (256, 128, 64, 32, 16)  # smp's default
SELECTIONS = ("val_loss", "val_metric_and_dice")


class DualTaskNetwork(nn.Module):
    """`dual_task`: smp U-Net (mask) + classification head, both on one EfficientNet-B0 encoder."""

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


class UNetR34AndEfficientNet(nn.Module):
    """`dual_task_unet_r34` (Table 4): smp U-Net with a ResNet34 encoder (mask) beside torchvision's EfficientNet-B0 (class)."""

    def __init__(self, n_classes: int, decoder_channels: tuple[int, ...], dropout: float):
        super().__init__()
        self.segmenter = smp.Unet(
            SEGMENTATION_ENCODER, encoder_weights=None, decoder_channels=decoder_channels, classes=1
        ).to(memory_format=torch.channels_last)
        self.classifier = torchvision.models.efficientnet_b0(weights=None, num_classes=n_classes, dropout=dropout).to(
            memory_format=torch.channels_last
        )

    @property
    def last_stage(self) -> nn.Module:
        """The classifier's final 1 x 1 convolution block (1280 channels), which its head pools."""
        return self.classifier.features[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, N x n_classes (the classifier alone)."""
        return self.classifier(x)

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """Mask logits, N x 1 x H x W (the U-Net alone)."""
        return self.segmenter(x)

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.segmenter(x), self.classifier(x)


def soft_dice_loss(mask_logits: torch.Tensor, masks: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Per-image 1 - soft Dice (sum p*t form), shape N; the replay needs each image's loss.

    smp's DiceLoss pools the batch into one value and gives an empty true mask no loss; here
    `smooth` keeps an empty mask meaningful: predicting it empty costs ~0, anything else more.
    """
    probs, truth = torch.sigmoid(mask_logits).flatten(1), masks.flatten(1).float()
    return 1 - (2 * (probs * truth).sum(1) + smooth) / (probs.sum(1) + truth.sum(1) + smooth)


def dual_task_losses(mask_logits: torch.Tensor, class_logits: torch.Tensor, masks: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-image loss, shape N: soft Dice loss of the mask + cross-entropy of the class (the paper's two terms, unweighted)."""
    return soft_dice_loss(mask_logits, masks) + F.cross_entropy(class_logits, targets, reduction="none")


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
    """The shared-encoder reading; `DualTaskUNetR34` changes only the network and the weights it loads."""

    pretrained_archs = (ENCODER,)

    def build_network(self, settings: dict[str, Any]) -> nn.Module:
        channels = tuple(int(c) for c in settings.get("decoder_channels", DEFAULT_DECODER_CHANNELS))
        return DualTaskNetwork(len(CLASSES), channels, float(settings.get("dropout", 0.2)))

    def load_imagenet_weights(self, network: nn.Module, ctx: RunContext) -> None:
        """The ImageNet weights of the encoder(s) (paper profile), before training."""
        load_pretrained(network.unet.encoder.model, pretrained_state_dict(ENCODER, ctx.weights_dir))

    def cam_target_layers(self, network: nn.Module) -> list[nn.Module]:
        return [network.last_stage]

    def validate(self, ctx: RunContext) -> None:
        super().validate(ctx)
        if int(ctx.settings["input_size"]) % UNET_STRIDE:
            raise BenchboxError(
                f"method {self.name!r}: input_size {ctx.settings['input_size']} is not a multiple of {UNET_STRIDE}, "
                f"which the U-Net needs; set a multiple of 32 in registry/{self.name}.yaml."
            )
        selection = ctx.settings.get("selection", "val_loss")
        if selection not in SELECTIONS:
            raise BenchboxError(f"method {self.name!r}: selection {selection!r} is unknown; choose one of {SELECTIONS} in registry/{self.name}.yaml.")

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

    @torch.no_grad()
    def validation_loss(self, network: nn.Module, data: ImageSet) -> float:
        """Mean per-image training loss (Dice + CE) of `network` on `data`, unaugmented, in eval mode."""
        network.eval()
        batch_size, total = int(self.settings.get("eval_batch_size", 64)), 0.0
        for start in range(0, len(data), batch_size):
            part = slice(start, start + batch_size)
            mask_logits, class_logits = network.both(model_inputs(data.images[part], self.device))
            masks = torch.from_numpy(np.asarray(data.masks[part], dtype=bool)).to(self.device)
            targets = torch.as_tensor(np.asarray(data.labels[part]), dtype=torch.long, device=self.device)
            total += float(dual_task_losses(mask_logits.float(), class_logits.float(), masks, targets).sum())
        return total / len(data)

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
            self.load_imagenet_weights(network, ctx)
        stage = stage_settings(settings)
        schedule = CurriculumReplay(
            train.labels, stage.epochs, float(settings.get("replay_fraction", 0.2)), float(settings.get("replay_pool", 0.2)),
            np.random.default_rng(ctx.seed),
        )  # fmt: skip
        dataset = ImageSetDataset(train.images, train.labels, train.masks, augmentation_from_settings(settings))
        batch_size, workers = int(settings["batch_size"]), int(settings.get("num_workers", 0))

        def batches(epoch: int):
            return train_loader(dataset, batch_size, ctx.seed + epoch, schedule.epoch_indices(epoch), workers)

        def batch_loss(net: nn.Module, batch: dict) -> torch.Tensor:
            mask_logits, class_logits = net.both(batch["inputs"])
            losses = dual_task_losses(mask_logits, class_logits, batch["mask"], batch["target"])
            schedule.record(batch["index"].cpu().numpy(), losses.detach().cpu().numpy())
            return losses.mean()

        if settings.get("selection", "val_loss") == "val_loss":

            def validate(net: nn.Module) -> float:  # higher is better: the negated validation loss
                return -self.validation_loss(net, val)

        else:
            classify = validator(val.images, val.labels, settings.get("val_metric", "balanced_accuracy"), ctx.device)

            def validate(net: nn.Module) -> float:  # equal weights, as the two tasks have in the loss
                dice = dice_iou(self._mask_probabilities([net], val.images) > float(settings.get("mask_threshold", 0.5)), val.masks)[0]
                return 0.5 * (classify(net) + float(np.nanmean(dice)))

        optimizer = torch.optim.Adam(network.parameters(), lr=float(settings["lr"]), weight_decay=float(settings.get("weight_decay", 0.0)))
        train_stage(network, optimizer, batches, batch_loss, validate, stage, ctx.device,
                    name=self.name, progress=ctx.progress, logger=ctx.logger,
                    resume=self.fit_resume, stateful={"curriculum": schedule})  # fmt: skip
        self.finish_fit()


class DualTaskUNetR34(DualTask):  # name, task, explainers, needs_masks: registry/dual_task_unet_r34.yaml
    """Table 4's reading: a U-Net-ResNet34 segmenter and an EfficientNet-B0 classifier, trained on the one loss."""

    pretrained_archs = (SEGMENTATION_ENCODER, CLASSIFIER)

    def build_network(self, settings: dict[str, Any]) -> nn.Module:
        channels = tuple(int(c) for c in settings.get("decoder_channels", DEFAULT_DECODER_CHANNELS))
        return UNetR34AndEfficientNet(len(CLASSES), channels, float(settings.get("dropout", 0.2)))

    def load_imagenet_weights(self, network: nn.Module, ctx: RunContext) -> None:
        load_pretrained(network.segmenter.encoder, pretrained_state_dict(SEGMENTATION_ENCODER, ctx.weights_dir), ("fc.",))
        load_pretrained(network.classifier, pretrained_state_dict(CLASSIFIER, ctx.weights_dir), ("classifier.",))
