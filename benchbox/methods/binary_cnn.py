"""`xception`, `inception_v3`, `efficientnet_b0`, `efficientnet_b0_128`: the binary CNNs with XAI, one builder.

The paper (binary_cnn_xai.txt; its text names no authors, title or venue) classifies dermoscopy
images of an ISIC Archive subset as benign or malignant with InceptionV3, Xception and
EfficientNet, "Adam optimizer with cross-entropy loss" (Sec. 2.7.3.1), "oversampling ... by
duplicating existing malignant images" and "class weight adjustment" (Sec. 9.4), and explains
them by Grad-CAM on "the last convolutional layer" (Sec. 4.4.1) and SmoothGrad (Sec. 4.4.2).
Each method here is an ImageNet architecture with a 2-class (benign, malignant) head at the
paper's input size (Sec. 9.3: 299 px for Xception and InceptionV3, 224 px for EfficientNetB0, 128
px for "EfficientNet"), stopped early on a validation score with the best epoch restored.

How the paper was read where it is vague:
- "Class weights + duplicate oversampling" are both applied, without counting the imbalance
  twice: malignant images are repeated until they are `oversample.fraction` of the benign count
  (0.5: half), and the class weights are the balanced weights of the counts an epoch then
  holds, so together they balance the loss. Weights from the raw counts on top of oversampled
  data would over-correct towards malignant. The paper gives neither amount.
- Early stopping: Sec. 2.7.3.2 monitors "accuracy, precision, recall, and F1-score" and applies
  "early stopping or learning rate scheduling"; the paper profile stops on validation accuracy,
  the first metric it lists. Epochs (30), learning rate (1e-4), patience (5) and batch size are not
  in the paper. The CPU profiles keep validation AUC (the card says why).
- Operating point: the paper's labels are the arg-max of the two classes, i.e. threshold 0.5 on
  the malignant probability; the method names no threshold of its own.
- The paper's "EfficientNet (128x128)" names no variant; EfficientNet-B0 is the only one it names,
  so `efficientnet_b0_128` is EfficientNet-B0 at 128 px (its own card, this class).
- SmoothGrad explains the input gradients (Sec. 2.5.1, 4.4.2, 6.2), not Grad-CAM maps, which Sec.
  2.7.5.2 once says it "enhances"; its noise level and sample count are not given.
- Xception is the original architecture (Chollet 2017, the Keras Applications model):
  timm's `legacy_xception`, not timm's `xception41/65/71` (the deeper DeepLab variants). Its
  ImageNet weights (ported from Keras) expect inputs scaled to [-1, 1], and InceptionV3's
  torchvision weights do too; both networks therefore convert benchbox's ImageNet-normalised
  inputs to that scaling first (a fixed affine map, kept when training from scratch so the
  network is the same in every profile).
- InceptionV3 is torchvision's. Its auxiliary classifier is trained with loss weight 0.4 (the
  PyTorch fine-tuning tutorial's choice; the paper gives none) where it can run, and removed after
  training: it is not part of the deployed predictor, whose parameter count and latency are
  measured. The auxiliary head pools a 17 x 17 Mixed_6e map with a 5 x 5 / stride-3 window and
  then needs a 5 x 5 map, so it only runs at 299 px and above; the small-input profiles turn it
  off (card setting `aux_logits`) and the card says so. InceptionV3 needs at least 75 px, and
  107 px for a 2 x 2 last feature map (Grad-CAM on a 1 x 1 map is a constant).
- EfficientNet-B0 is torchvision's (the weights `efficientnet_b0` resolves to).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import timm
import torch
import torchvision
from torch import nn
from torchvision.models.inception import InceptionAux, InceptionOutputs

from ..data.arrays import ImageSet
from ..errors import BenchboxError
from ..labels import BINARY_CLASSES
from ..training.data import IMAGENET_MEAN, IMAGENET_STD
from ..training.loop import train_stage, validator
from ..training.pretrained import load_pretrained, pretrained_state_dict
from ..training.recipes import stage_settings, training_batches
from ..training.sampling import balanced_class_weights, oversample_targets
from .base import RunContext
from .torch_method import TorchMethod

INCEPTION_MIN_INPUT = 75  # torchvision's InceptionV3 fails below this
INCEPTION_AUX_MIN_INPUT = 299  # the auxiliary classifier needs a 17 x 17 Mixed_6e map
IMAGENET_CLASSES = 1000  # the head size torchvision's EfficientNet initialisation was scaled for


def epoch_class_weights(targets: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """Balanced class weights of the class counts one epoch holds after duplicate oversampling."""
    targets, n_classes = np.asarray(targets), len(BINARY_CLASSES)
    oversample = settings.get("oversample") or {}
    if oversample.get("kind") == "duplicate":
        counts = oversample_targets(targets, n_classes, float(oversample["fraction"]))
    else:
        counts = np.bincount(targets, minlength=n_classes)
    return balanced_class_weights(np.repeat(np.arange(n_classes), counts), n_classes)


class UnitRangeInput(nn.Module):
    """ImageNet-normalised inputs -> the [-1, 1] scaling Keras/TF-trained weights expect (as torchvision's `transform_input`)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) / 0.5, persistent=False)
        self.register_buffer("shift", (torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) - 0.5) / 0.5, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class XceptionClassifier(nn.Module):
    """timm's original Xception with a 2-class head, fed [-1, 1]-scaled inputs."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.rescale = UnitRangeInput()
        self.backbone = timm.create_model("legacy_xception", pretrained=False, num_classes=n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.rescale(x))


class BinaryCNN(TorchMethod):
    """The shared builder and procedure of the three binary CNNs; a variant names its network and layers."""

    arch: ClassVar[str]  # the torchvision/timm architecture whose ImageNet weights the paper profile loads
    new_head_prefixes: ClassVar[tuple[str, ...]]  # the ImageNet classifier's keys, replaced by the 2-class head

    def weights_target(self, network: nn.Module) -> nn.Module:
        """The module the ImageNet state dict of `arch` is loaded into."""
        return network

    def begin_training(self, network: nn.Module, settings: dict[str, Any]) -> None:
        """Attach training-only parts before pretrained weights are loaded (InceptionV3: its auxiliary head)."""

    def end_training(self, network: nn.Module) -> None:
        """Remove the training-only parts, leaving the deployed predictor."""

    def batch_loss(self, network: nn.Module, batch: dict, loss: nn.Module) -> torch.Tensor:
        return loss(network(batch["inputs"]), batch["target"])

    def fit(self, train: ImageSet, val: ImageSet, ctx: RunContext) -> None:
        train, val = self.start_fit(train, val, ctx)
        settings, network = self.settings, self.nets[0]
        self.begin_training(network, settings)
        if ctx.pretrained:
            load_pretrained(self.weights_target(network), pretrained_state_dict(self.arch, ctx.weights_dir), self.new_head_prefixes)
        targets = train.malignant
        weights = torch.tensor(epoch_class_weights(targets, settings), dtype=torch.float32, device=ctx.device)
        loss = nn.CrossEntropyLoss(weight=weights)
        optimizer = torch.optim.Adam(network.parameters(), lr=float(settings["lr"]))
        train_stage(
            network, optimizer, training_batches(train, targets, len(self.classes), settings, ctx.seed),
            lambda net, batch: self.batch_loss(net, batch, loss),
            validator(val.images, val.malignant, settings.get("val_metric", "auc"), ctx.device),
            stage_settings(settings), ctx.device,
            name=self.name, progress=ctx.progress, logger=ctx.logger, resume=self.fit_resume,
        )  # fmt: skip
        self.end_training(network)
        self.finish_fit()


class Xception(BinaryCNN):  # name, task, explainers: registry/xception.yaml
    arch = "legacy_xception"
    pretrained_archs = (arch,)
    new_head_prefixes = ("fc.",)

    def build_network(self, settings: dict[str, Any]) -> nn.Module:
        return XceptionClassifier(len(self.classes))

    def weights_target(self, network: nn.Module) -> nn.Module:
        return network.backbone

    def cam_target_layers(self, network: nn.Module) -> list[nn.Module]:
        return [network.backbone.act4]  # the last activation before global pooling


class InceptionV3(BinaryCNN):  # name, task, explainers: registry/inception_v3.yaml
    arch = "inception_v3"
    pretrained_archs = (arch,)
    new_head_prefixes = ("fc.", "AuxLogits.fc.")

    def build_network(self, settings: dict[str, Any]) -> nn.Module:
        # the deployed network has no auxiliary head; transform_input = the [-1, 1] scaling of its weights
        return torchvision.models.inception_v3(
            weights=None, num_classes=len(self.classes), aux_logits=False, transform_input=True, init_weights=True
        )

    def cam_target_layers(self, network: nn.Module) -> list[nn.Module]:
        return [network.Mixed_7c]

    def validate(self, ctx: RunContext) -> None:
        """The input size fits the network (and its auxiliary head, when trained) before anything else."""
        size = ctx.settings.get("input_size")
        if size is not None and size < INCEPTION_MIN_INPUT:
            raise BenchboxError(f"method {self.name!r}: input_size {size} is below InceptionV3's minimum of {INCEPTION_MIN_INPUT} px; raise it in the card.")
        if size is not None and ctx.settings.get("aux_logits") and size < INCEPTION_AUX_MIN_INPUT:
            raise BenchboxError(
                f"method {self.name!r}: the auxiliary classifier needs input_size >= {INCEPTION_AUX_MIN_INPUT} px, profile "
                f"{ctx.profile!r} has {size}; set aux_logits: false in that profile of the card."
            )
        super().validate(ctx)

    def begin_training(self, network: nn.Module, settings: dict[str, Any]) -> None:
        if settings.get("aux_logits"):
            network.AuxLogits = auxiliary_head(len(self.classes)).to(self.device)
            network.aux_logits = True

    def end_training(self, network: nn.Module) -> None:
        network.AuxLogits, network.aux_logits = None, False

    def batch_loss(self, network: nn.Module, batch: dict, loss: nn.Module) -> torch.Tensor:
        outputs = network(batch["inputs"])
        if isinstance(outputs, InceptionOutputs):  # training mode with the auxiliary head attached
            weight = float(self.settings.get("aux_loss_weight", 0.4))
            return loss(outputs.logits, batch["target"]) + weight * loss(outputs.aux_logits, batch["target"])
        return loss(outputs, batch["target"])


def auxiliary_head(n_classes: int) -> InceptionAux:
    """torchvision's InceptionV3 auxiliary classifier on Mixed_6e, initialised as `Inception3` initialises it."""
    head = InceptionAux(768, n_classes)
    for module in head.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, mean=0.0, std=float(getattr(module, "stddev", 0.1)), a=-2, b=2)
    return head


class EfficientNetB0(BinaryCNN):  # name, task, explainers: registry/efficientnet_b0.yaml
    arch = "efficientnet_b0"
    pretrained_archs = (arch,)
    new_head_prefixes = ("classifier.",)

    def build_network(self, settings: dict[str, Any]) -> nn.Module:
        network = torchvision.models.efficientnet_b0(weights=None, num_classes=len(self.classes))
        # torchvision draws the head from U(+-1/sqrt(out_features)): +-0.03 for ImageNet's 1,000 classes but
        # +-0.71 for 2, whose first logits then run to tens (epoch-1 training loss 3.3 from scratch at 96 px).
        # The 2-class head is drawn at the ImageNet head's scale, in every profile (it is new in each).
        bound = 1.0 / math.sqrt(IMAGENET_CLASSES)
        nn.init.uniform_(network.classifier[-1].weight, -bound, bound)
        return network

    def cam_target_layers(self, network: nn.Module) -> list[nn.Module]:
        return [network.features[-1]]  # the final 1 x 1 convolution block (1280 channels)
