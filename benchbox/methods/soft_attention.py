"""`soft_attention` (Imran et al., Deep-Lesion Scan) and its baseline `resnet50`: one ResNet50 family.

Architecture: ResNet50 up to layer4 (2048 channels); for `soft_attention`, a soft spatial
attention block multiplies the layer4 features by an attention map; then global average
pooling and a dense head (2048 -> 256, ReLU, dropout 0.5 -> 7) whose weights carry an L2
penalty (weight decay on the head only). Training, identical for both: cross-entropy with
label smoothing 0.1 and balanced class weights; phase 1 trains the head (and attention) on a
frozen ImageNet backbone; phase 2 unfreezes the top 40% of the backbone's layers at a lower
learning rate; both phases use Adam, ReduceLROnPlateau on the validation score and early
stopping, and phase 2 returns to phase 1's weights if it never beats them. Explainers: the
attention map itself ("attention", soft_attention only) and Grad-CAM.

How the paper was read where it is vague:
- The attention block follows the soft-attention layer of Datta et al. (2021, arXiv
  2105.03358) that such models use: a 3 x 3 convolution gives 16 attention heads, each a
  softmax over the spatial positions; their mean is the attention map (summing to 1 over
  positions), and the features are multiplied by map x (H x W), so a uniform map leaves the
  features unchanged. The convolution starts at zero, so training starts from the plain
  ResNet50 and the attention has to earn its departures from uniform. (Datta et al. also
  concatenate the un-attended features; the design here says the map multiplies the
  features, so only the attended features go on.)
- "Top ~40%" counts layers (convolutions, norms), as Keras' `base.layers[...]` does, not
  parameters; frozen BatchNorm layers stay in inference mode.
- From scratch, residual branches start at zero (torchvision's `zero_init_residual`, Goyal et
  al. 2017), which makes the short quick-profile training far more stable; ImageNet weights
  replace this initialisation in the paper profile.
- The baseline `resnet50` is the same network and procedure without the attention block, so
  the pair measures what the attention adds.
- Without pretrained weights (quick and smoke profiles, or --no-pretrained) there is no
  backbone worth freezing: phase 1 then trains every layer at the phase-1 learning rate and
  phase 2 continues every layer at the lower phase-2 rate. The two-rate schedule, losses and
  early stopping are kept; only the freezing, an artefact of transfer learning, is dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ..data.arrays import ImageSet
from ..explain.maps import normalise_maps
from ..labels import CLASSES
from ..training.finetune import param_groups, set_trainable, unfreeze_top_fraction
from ..training.loop import train_stage, validator
from ..training.pretrained import load_pretrained, pretrained_state_dict
from ..training.recipes import stage_settings, training_batches
from ..training.sampling import balanced_class_weights
from .base import RunContext
from .torch_method import TorchMethod


class SoftSpatialAttention(nn.Module):
    """Multi-head spatial softmax attention; multiplies the features by their attention map."""

    def __init__(self, channels: int, heads: int = 16, kernel_size: int = 3):
        super().__init__()
        self.heads = nn.Conv2d(channels, heads, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.heads.weight)  # uniform attention at the start
        nn.init.zeros_(self.heads.bias)

    def weights(self, features: torch.Tensor) -> torch.Tensor:
        """N x 1 x h x w attention map, summing to 1 over positions."""
        logits = self.heads(features)
        return torch.softmax(logits.flatten(2), dim=-1).view_as(logits).mean(dim=1, keepdim=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        height, width = features.shape[-2:]
        return features * self.weights(features) * (height * width)


class ResNet50Classifier(nn.Module):
    """ResNet50 trunk -> optional soft attention -> global average pool -> dense head with dropout."""

    def __init__(self, n_classes: int, attention: bool, head_units: int, dropout: float):
        super().__init__()
        self.backbone = torchvision.models.resnet50(weights=None, zero_init_residual=True)
        self.backbone.fc = nn.Identity()  # the ImageNet classifier is not part of this model
        self.attention = SoftSpatialAttention(2048) if attention else None
        self.head = nn.Sequential(nn.Linear(2048, head_units), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(head_units, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        if self.attention is not None:
            features = self.attention(features)
        return self.head(features.mean(dim=(2, 3)))


class ResNet50Family(TorchMethod):
    """The shared builder and two-phase procedure of `soft_attention` and `resnet50`."""

    pretrained_archs = ("resnet50",)
    with_attention: bool

    def build_network(self, settings: dict[str, Any]) -> nn.Module:
        return ResNet50Classifier(len(CLASSES), self.with_attention, int(settings.get("head_units", 256)), float(settings.get("dropout", 0.5)))

    def cam_target_layers(self, network: nn.Module) -> list[nn.Module]:
        # the last feature map the head sees: attended features, or layer4 for the plain model
        return [network.attention if network.attention is not None else network.backbone.layer4]

    def _optimizer(self, network: ResNet50Classifier, lr: float) -> torch.optim.Optimizer:
        parts = [(network.backbone, lr, 0.0), (network.head, lr, float(self.settings.get("head_weight_decay", 0.0)))]
        if network.attention is not None:
            parts.append((network.attention, lr, 0.0))
        return torch.optim.Adam(param_groups(parts))

    def fit(self, train: ImageSet, val: ImageSet, ctx: RunContext) -> None:
        train, val = self.start_fit(train, val, ctx)
        settings, network = self.settings, self.nets[0]
        if ctx.pretrained:
            load_pretrained(network.backbone, pretrained_state_dict("resnet50", ctx.weights_dir), ignore_prefixes=("fc.",))
        weights = torch.tensor(balanced_class_weights(train.labels, len(CLASSES)), dtype=torch.float32, device=ctx.device)
        loss = nn.CrossEntropyLoss(weight=weights, label_smoothing=float(settings.get("label_smoothing", 0.1)))
        batches = training_batches(train, train.labels, len(CLASSES), settings, ctx.seed)
        validate = validator(val.images, val.labels, settings.get("val_metric", "balanced_accuracy"), ctx.device)

        def batch_loss(net: nn.Module, batch: dict) -> torch.Tensor:
            return loss(net(batch["inputs"]), batch["target"])

        phase1, phase2 = settings["phase1"], settings["phase2"]
        set_trainable(network.backbone, not ctx.pretrained)  # from scratch: nothing to freeze
        first = train_stage(network, self._optimizer(network, float(phase1["lr"])), batches, batch_loss, validate,
                            stage_settings(phase1), ctx.device, name=f"{self.name} phase 1", progress=ctx.progress,
                            logger=ctx.logger, checkpoint_path=self.stage_checkpoint(ctx, "phase1"),
                            resume=self.fit_resume)  # fmt: skip
        if ctx.pretrained:
            unfreeze_top_fraction(network.backbone, float(phase2.get("unfreeze_fraction", 0.4)))
        train_stage(network, self._optimizer(network, float(phase2["lr"])), batches, batch_loss, validate,
                    stage_settings(phase2), ctx.device, name=f"{self.name} phase 2", progress=ctx.progress,
                    logger=ctx.logger, checkpoint_path=self.stage_checkpoint(ctx, "phase2"),
                    initial_score=first.best_score, resume=self.fit_resume)  # fmt: skip
        set_trainable(network, True)
        self.finish_fit()


class SoftAttention(ResNet50Family):  # name, task, explainers: registry/soft_attention.yaml
    with_attention = True

    def explain_network(self, network: nn.Module, inputs: torch.Tensor, targets: np.ndarray, explainer: str) -> np.ndarray:
        """The "attention" explainer: the model's own map, upsampled to the input; the same for every target class."""
        if explainer != "attention":
            return super().explain_network(network, inputs, targets, explainer)
        network.eval()
        batch_size = int(self.settings.get("eval_batch_size", 64))
        with torch.no_grad():
            maps = [
                F.interpolate(network.attention.weights(network.features(inputs[start : start + batch_size])),
                              size=inputs.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
                for start in range(0, len(inputs), batch_size)
            ]  # fmt: skip
        return normalise_maps(torch.cat(maps).cpu().numpy())


class ResNet50(ResNet50Family):  # name, task, explainers: registry/resnet50.yaml
    with_attention = False
