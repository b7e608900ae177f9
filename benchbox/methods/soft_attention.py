"""`soft_attention` (Imran, Alhusaini and Alwahas, "Deep-Lesion Scan") and its baseline `resnet50`: one ResNet50 family.

Architecture (Secs. 3.1-3.3): ResNet50 up to layer4 (2048 channels); for `soft_attention`, a soft
spatial attention block after the last residual block multiplies the layer4 features
element-wise by an attention map; then global average pooling and a dense head (2048 -> 256,
ReLU, dropout 0.5 -> 7, softmax) whose weights carry an L2 penalty (weight decay on the head
only). Training, identical for both ("trained in the same experimental conditions", Sec. 4.4):
categorical cross-entropy with label smoothing 0.1 and class weights from the training
distribution (Sec. 3.4); in the paper profile, minority classes repeated under augmentation
up to 2,000 training images per class (Sec. 4.1); phase 1 trains the head (and attention) on a
frozen ImageNet backbone with Adam at 1e-4 (Secs. 3.3, 4.1); phase 2 unfreezes the last 40% of
the backbone's layers at a lower rate; both phases use ReduceLROnPlateau and early stopping on
the validation loss, up to 70 epochs in all (Sec. 4.1), and phase 2 returns to phase 1's
weights if it never beats them. Explainers: the attention map itself ("attention",
soft_attention only) and Grad-CAM (Sec. 4.3).

How the paper was read where it is vague or contradicts itself (registry/fidelity/soft_attention.md):
- The attention block follows the soft-attention layer of Datta et al. (2021, arXiv
  2105.03358), the "ResNet50+SA (Paper)" the report compares with (Table 4.2, Fig. 4.4): a
  3 x 3 convolution gives 16 attention heads, each a softmax over the spatial positions; their
  mean is the attention map (summing to 1 over positions), and the features are multiplied by
  map x (H x W), so a uniform map leaves the features unchanged. The convolution starts at
  zero, so training starts from the plain ResNet50 and the attention has to earn its departures
  from uniform. (Datta et al. also concatenate the un-attended features; Sec. 3.3 says the map
  is "element-wise multiplied with the original feature maps", so only those go on.)
- The "multi-scale feature fusion" and "class-specific attention refinement" of the ablation
  (Sec. 4.5) and conclusion are described nowhere in the methods: not built.
- "Top 40-50%" (Sec. 3.3) vs "the last 40%" (Sec. 4.1): 40%, counting layers (convolutions,
  norms) as Keras' `base.layers[...]` does, not parameters; frozen BatchNorm layers stay in
  inference mode. Phase 2's "lower learning rate" is not given: 1e-5, a tenth of phase 1.
- Minority augmentation "approximately 2,000 training images per class" (Sec. 4.1): every
  class below `minority_augment.per_class` images is topped up to it by repeats, each repeat
  augmented afresh; larger classes keep all their images, once (no undersampling is
  described). Class weights stay those of the un-augmented training set ("based on the
  distribution of lesion types in the HAM10000 dataset", Sec. 3.4).
- "Random rotations, flips, zooms, brightness variations, and shearing" (Sec. 4.1), ranges not
  given: the shared flips, quarter turns and colour jitter, then (paper profile) a rotation of
  up to +-45 degrees (with the quarter turns: any angle), zoom 0.9-1.1 and shear up to +-10
  degrees (`AffineAugmentation`). Smoke and quick keep the shared augmentation only, so the
  CI gate's smoke baseline keeps its meaning (whether the affine changes help at 48 px was
  not measured).
- "Track validation loss" (Sec. 3.3): `val_metric: neg_log_loss` in the paper profile, the
  plain (unweighted, unsmoothed) cross-entropy of the validation set, which ranks epochs by
  calibrated fit rather than by the training objective's smoothing and weights.
- From scratch, residual branches start at zero (torchvision's `zero_init_residual`, Goyal et
  al. 2017), which makes the short quick-profile training far more stable; ImageNet weights
  replace this initialisation in the paper profile.
- The baseline `resnet50` (Sec. 4.3, "standard pre-trained ResNet50 without any attention
  mechanism") is the same network and procedure without the attention block, so the pair
  measures what the attention adds.
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
import torchvision.transforms.v2.functional as TF
from torch import nn
from torchvision.transforms import InterpolationMode

from ..data.arrays import ImageSet
from ..explain.maps import normalise_maps
from ..labels import CLASSES
from ..training.data import IMAGENET_MEAN, Augmentation, ImageSetDataset, augmentation_from_settings, train_loader
from ..training.finetune import param_groups, set_trainable, unfreeze_top_fraction
from ..training.loop import train_stage, validator
from ..training.pretrained import load_pretrained, pretrained_state_dict
from ..training.recipes import stage_settings, training_batches
from ..training.sampling import balanced_class_weights
from .base import RunContext
from .torch_method import TorchMethod


def minority_augmentation_indices(targets: np.ndarray, n_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Every index once, plus repeats of each smaller class's images (drawn evenly) until it has `per_class`.

    The loader augments every item afresh, so a repeat is a new augmented view (Sec. 4.1:
    "augmentation was intensified ... approximately 2,000 training images per class").
    Repeats cycle through a class's shuffled images, so no image is repeated twice before
    every image of its class has been repeated once.
    """
    if int(per_class) < 1:
        raise ValueError(f"minority_augment per_class must be a positive image count, got {per_class}")
    targets = np.asarray(targets)
    extra = []
    for c in range(n_classes):
        members = np.flatnonzero(targets == c)
        missing = int(per_class) - len(members)
        if len(members) and missing > 0:
            rounds = -(-missing // len(members))
            extra.append(np.concatenate([rng.permutation(members) for _ in range(rounds)])[:missing])
    return np.concatenate([np.arange(len(targets)), *extra]).astype(np.int64)


class AffineAugmentation:
    """The shared augmentation, then a random rotation, zoom and shear (Sec. 4.1's "rotations, ... zooms, ... shearing").

    Angles are drawn uniformly in +-`degrees`, the scale in 1 +- `zoom`, the shear angle in
    +-`shear` degrees (one axis, as Keras' `shear_range`); corners that come from outside the
    image are filled with the ImageNet mean colour (0 after normalisation). The image is
    interpolated bilinearly, a mask by nearest neighbour. `draw` makes exactly the random draws
    `__call__` makes, in the same order, so a resumed loader worker can replay them.
    """

    def __init__(self, base: Augmentation, degrees: float, zoom: float, shear: float):
        if min(degrees, zoom, shear) < 0 or zoom >= 1:
            raise ValueError(f"affine_augment needs degrees, shear >= 0 and 0 <= zoom < 1, got {degrees}, {zoom}, {shear}")
        self.base, self.degrees, self.zoom, self.shear = base, float(degrees), float(zoom), float(shear)

    def _affine_draw(self) -> tuple[float, float, float]:
        angle, scale, shear = (torch.empty(3).uniform_(-1, 1) * torch.tensor([self.degrees, self.zoom, self.shear])).tolist()
        return angle, 1 + scale, shear

    def draw(self, height: int, width: int) -> tuple:
        return self.base.draw(height, width), self._affine_draw()

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        image, mask = self.base(image, mask)
        angle, scale, shear = self._affine_draw()
        geometry = dict(angle=angle, translate=[0, 0], scale=scale, shear=[shear, 0.0])
        fill = [round(255 * m) for m in IMAGENET_MEAN]
        image = TF.affine(image, **geometry, interpolation=InterpolationMode.BILINEAR, fill=fill)
        if mask is not None:
            mask = TF.affine(mask[None], **geometry, interpolation=InterpolationMode.NEAREST, fill=[0])[0]
        return image, mask


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

    def _batches(self, train: ImageSet, seed: int):
        """Training batches; the paper profile's `minority_augment: {per_class: N}` tops small classes up to
        N augmented views, and its `affine_augment: {degrees, zoom, shear}` adds Sec. 4.1's geometric changes."""
        minority, affine = self.settings.get("minority_augment"), self.settings.get("affine_augment")
        if not minority and not affine:
            return training_batches(train, train.labels, len(CLASSES), self.settings, seed)
        if (self.settings.get("oversample") or {}).get("kind", "none") != "none":
            raise ValueError(f"{self.name}: set either minority_augment / affine_augment or oversample in the card, not both")
        indices = None
        if minority:
            indices = minority_augmentation_indices(train.labels, len(CLASSES), int(minority["per_class"]), np.random.default_rng(seed))
        augmentation = augmentation_from_settings(self.settings)
        if affine and augmentation is not None:
            augmentation = AffineAugmentation(augmentation, float(affine["degrees"]), float(affine["zoom"]), float(affine["shear"]))
        dataset = ImageSetDataset(train.images, train.labels, None, augmentation)
        return train_loader(dataset, int(self.settings["batch_size"]), seed, indices, int(self.settings.get("num_workers", 0)))

    def fit(self, train: ImageSet, val: ImageSet, ctx: RunContext) -> None:
        train, val = self.start_fit(train, val, ctx)
        settings, network = self.settings, self.nets[0]
        if ctx.pretrained:
            load_pretrained(network.backbone, pretrained_state_dict("resnet50", ctx.weights_dir), ignore_prefixes=("fc.",))
        weights = torch.tensor(balanced_class_weights(train.labels, len(CLASSES)), dtype=torch.float32, device=ctx.device)
        loss = nn.CrossEntropyLoss(weight=weights, label_smoothing=float(settings.get("label_smoothing", 0.1)))
        batches = self._batches(train, ctx.seed)
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
