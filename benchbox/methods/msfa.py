"""`msfa`: ResNet18 with Multi-Scale Feature Aggregation (Kohli, Gupta and Kumar, Chandigarh University).

Architecture (paper Sec. III.C, Eq. (1) and Fig. 2): ResNet18 up to layer4 (512 channels);
MSFA block = three parallel average pools of layer4 with kernels k = 4, 8 and 16, concatenated
channel-wise (3 x 512), re-projected to 512 channels by a 1 x 1 map, BatchNorm and ReLU; then
global average pooling, dropout and a linear 7-class head. Training: focal loss (gamma 2) on
SMOTE-style synthetic minority oversampling (`benchbox.training.sampling.synthetic_oversampling`),
Adam, cosine annealing, early stopping on validation balanced accuracy. Explained by Grad-CAM
(Sec. III.E, Eqs. (3)-(4)) on layer4, the "final convolutional layer" whose map F the block
pools (Sec. III.C; the paper does not name Grad-CAM's layer).

How the paper was read where it is vague or contradicts itself (registry/fidelity/msfa.md):
- Pooling (Fig. 2 "AvgPool (k in {4, 8, 16})", Eq. (1) concatenates the pooled maps
  channel-wise, so they must share one grid): each branch is a stride-1 "same" average pool of
  kernel k (padding (k-1)//2 before, k//2 after, padded cells not counted), so the output keeps
  layer4's grid and no upsampling, which the paper never mentions, is needed. On the 7 x 7
  layer4 of a 224 px input the k=4 branch averages 2-4 cells per side, k=8 averages 5-7 (the
  whole map at the centre, less near the border) and k=16 is the global mean everywhere. The
  kernel sizes are the same in every profile: layer4 cells are 32 input pixels, so a kernel of
  4 cells spans 128 px of input, and on the 2 x 2 layer4 maps of the smoke and quick profiles
  (48 and 64 px inputs) all three windows cover the whole image, exactly as the paper's windows
  would on so small an image: there the block carries global context only.
- Parameters (Fig. 2 "Total added parameters: < 0.3 M", Table IV "~11.5 M" overall, against
  Eq. (1)'s 1 x 1 map from 1536 to 512 channels, which alone has 0.79 M): the 1 x 1 map is
  factorised through a 128-channel bottleneck (1536 -> 128 -> 512, no non-linearity between,
  so it is still one linear 1 x 1 map W of Eq. (1), of rank 128; Fig. 2 calls it a "1 x 1
  bottleneck"). Added: 196,608 + 65,536 + 1,024 (BatchNorm) = 0.263 M; the model has 11.44 M
  at 224 px (ResNet18 without its ImageNet classifier: 11.18 M; the 7-class head 3,591).
  BatchNorm and ReLU after the projection are ours (Fig. 2 shows none; 1,024 parameters).
- Trained from scratch, the ResNet starts with zero-initialised residual branches (the last
  BatchNorm of each block, Goyal et al. 2017; torchvision's `zero_init_residual`), so the few
  epochs of the quick profile start from a near-identity trunk; ImageNet weights ("transfer
  learning", Index Terms) replace this initialisation in the paper profile.
- The paper gives no input size, optimiser, learning rate, schedule, batch size, epochs, focal
  alpha/gamma or oversampling ratio: 224 px, Adam, cosine annealing, gamma 2 without alpha, and
  raising every class to a quarter of the largest class's count by synthetic samples (on
  HAM10000 about tenfold for df and vasc, keeping an epoch under twice the data) are our
  choices (card settings). Class weights are not used on top of focal loss and oversampling.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ..data.arrays import ImageSet
from ..labels import CLASSES
from ..training.loop import train_stage, validator
from ..training.losses import FocalLoss
from ..training.pretrained import load_pretrained, pretrained_state_dict
from ..training.recipes import stage_settings, training_batches
from .base import RunContext
from .torch_method import TorchMethod


def same_average_pool(features: torch.Tensor, kernel: int) -> torch.Tensor:
    """Stride-1 average pool of window `kernel` that keeps the grid; cells outside the map are not counted.

    A window wider than the map averages what it covers (the whole map, at every cell, once kernel >= 2 x side).
    """
    before, after = (kernel - 1) // 2, kernel // 2
    padding = (before, after, before, after)
    sums = F.avg_pool2d(F.pad(features, padding), kernel, stride=1)
    counts = F.avg_pool2d(F.pad(features.new_ones(1, 1, *features.shape[-2:]), padding), kernel, stride=1)
    return sums / counts


class MultiScaleAggregation(nn.Module):
    """Eq. (1): parallel stride-1 average pools (kernels 4, 8, 16), concatenated, a rank-limited 1 x 1 map, BN, ReLU."""

    def __init__(self, channels: int, kernels: tuple[int, ...] = (4, 8, 16), bottleneck: int = 128):
        super().__init__()
        if not kernels or any(int(k) < 1 for k in kernels):
            raise ValueError(f"msfa pool_kernels must be positive window sizes, got {kernels}")
        self.kernels = tuple(int(k) for k in kernels)
        self.fuse = nn.Sequential(
            nn.Conv2d(channels * len(self.kernels), bottleneck, kernel_size=1, bias=False),
            nn.Conv2d(bottleneck, channels, kernel_size=1, bias=False),  # no non-linearity: one 1 x 1 map
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([same_average_pool(features, k) for k in self.kernels], dim=1))


class MSFANetwork(nn.Module):
    """ResNet18 trunk -> MSFA block -> global average pool -> dropout -> linear head."""

    def __init__(self, n_classes: int, dropout: float, kernels: tuple[int, ...], bottleneck: int):
        super().__init__()
        self.backbone = torchvision.models.resnet18(weights=None, zero_init_residual=True)
        self.backbone.fc = nn.Identity()  # the ImageNet classifier is not part of this model
        self.msfa = MultiScaleAggregation(512, kernels, bottleneck)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(512, n_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        return b.layer4(b.layer3(b.layer2(b.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.msfa(self.features(x)).mean(dim=(2, 3)))


class MSFA(TorchMethod):  # name, task, explainers: registry/msfa.yaml
    pretrained_archs = ("resnet18",)

    def build_network(self, settings: dict[str, Any]) -> nn.Module:
        return MSFANetwork(len(CLASSES), float(settings.get("dropout", 0.3)), tuple(settings.get("pool_kernels", (4, 8, 16))),
                           int(settings.get("bottleneck_channels", 128)))  # fmt: skip

    def cam_target_layers(self, network: nn.Module) -> list[nn.Module]:
        # layer4, "the final convolutional layer" (Sec. III.C): on the 2 x 2 maps of the small
        # profiles every MSFA window is global, so the block's output has no spatial detail left
        return [network.backbone.layer4]

    def fit(self, train: ImageSet, val: ImageSet, ctx: RunContext) -> None:
        train, val = self.start_fit(train, val, ctx)
        settings, network = self.settings, self.nets[0]
        if ctx.pretrained:
            load_pretrained(network.backbone, pretrained_state_dict("resnet18", ctx.weights_dir), ignore_prefixes=("fc.",))
        batches = training_batches(train, train.labels, len(CLASSES), settings, ctx.seed)
        loss = FocalLoss(gamma=float(settings.get("focal_gamma", 2.0))).to(ctx.device)
        optimizer = torch.optim.Adam(network.parameters(), lr=float(settings["lr"]), weight_decay=float(settings.get("weight_decay", 0.0)))
        train_stage(
            network, optimizer, batches,
            lambda net, batch: loss(net(batch["inputs"]), batch["target"]),
            validator(val.images, val.labels, settings.get("val_metric", "balanced_accuracy"), ctx.device),
            stage_settings(settings), ctx.device,
            name=self.name, progress=ctx.progress, logger=ctx.logger, checkpoint_path=self.stage_checkpoint(ctx, "train"),
            resume=self.fit_resume,
        )  # fmt: skip
        self.finish_fit()
