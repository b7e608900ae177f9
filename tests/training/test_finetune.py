from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from benchbox.training.finetune import (
    keep_frozen_norms_in_eval,
    layers_with_parameters,
    param_groups,
    set_trainable,
    unfreeze_top_fraction,
)


def test_unfreeze_top_fraction_counts_layers_from_the_output_end():
    backbone = torchvision.models.resnet50(weights=None)
    backbone.fc = nn.Identity()
    layers = layers_with_parameters(backbone)
    assert len(layers) == 106  # 53 convolutions + 53 batch norms
    assert unfreeze_top_fraction(backbone, 0.4) == 42
    trainable = [any(p.requires_grad for p in layer.parameters()) for layer in layers]
    assert trainable == [False] * 64 + [True] * 42
    assert all(p.requires_grad for p in backbone.layer4.parameters())  # layer4 has 30 layers
    assert not backbone.conv1.weight.requires_grad and not backbone.layer2[0].conv1.weight.requires_grad
    assert unfreeze_top_fraction(backbone, 0.0) == 0 and not any(p.requires_grad for p in backbone.parameters())


def test_frozen_batchnorm_stays_in_eval_mode_and_keeps_its_statistics():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    set_trainable(net[:2], False)
    net.train()
    keep_frozen_norms_in_eval(net)
    assert not net[1].training and net[3].training
    before = net[1].running_mean.clone()
    net(torch.randn(8, 3, 8, 8) + 5)
    assert torch.equal(net[1].running_mean, before) and not torch.equal(net[3].running_mean, torch.zeros(4))


def test_param_groups_give_differential_rates_and_skip_frozen_parameters():
    backbone, head = nn.Linear(4, 4), nn.Linear(4, 2)
    groups = param_groups([(backbone, 1e-5, 0.0), (head, 1e-3, 1e-4)])
    assert [(len(g["params"]), g["lr"], g["weight_decay"]) for g in groups] == [(2, 1e-5, 0.0), (2, 1e-3, 1e-4)]
    set_trainable(backbone, False)
    assert len(param_groups([(backbone, 1e-5, 0.0), (head, 1e-3, 0.0)])) == 1
    set_trainable(head, False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups([(backbone, 1e-5, 0.0), (head, 1e-3, 0.0)])
