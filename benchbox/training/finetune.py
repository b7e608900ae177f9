"""Freezing, partial unfreezing and per-part learning rates for fine-tuning a pretrained backbone."""

from __future__ import annotations

from torch import nn


def set_trainable(module: nn.Module, trainable: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(trainable)


def layers_with_parameters(module: nn.Module) -> list[nn.Module]:
    """Leaf modules that own parameters (convolutions, norms, linears), in definition order."""
    return [m for m in module.modules() if not list(m.children()) and list(m.parameters(recurse=False))]


def unfreeze_top_fraction(module: nn.Module, fraction: float) -> int:
    """Freeze `module`, then unfreeze its last `fraction` of layers (those nearest the output).

    Layers are counted, not parameters: that is what "unfreeze the top 40%" means in the
    Keras code these papers use (`base.layers[int(0.6 * n):]`); counting parameters would
    put almost all of a ResNet's layer4 in the top 40%. Returns the number of layers unfrozen.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    layers = layers_with_parameters(module)
    set_trainable(module, False)
    count = int(round(fraction * len(layers)))
    for layer in layers[len(layers) - count :]:
        set_trainable(layer, True)
    return count


def keep_frozen_norms_in_eval(model: nn.Module) -> None:
    """Put normalisation layers whose parameters are all frozen back in eval mode (after model.train()).

    A frozen BatchNorm must also stop updating its running statistics, or fine-tuning drifts
    the pretrained features it was meant to keep (Keras does this for non-trainable layers).
    """
    for layer in model.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            parameters = list(layer.parameters(recurse=False))
            if parameters and not any(p.requires_grad for p in parameters):
                layer.eval()


def param_groups(parts: list[tuple[nn.Module, float, float]]) -> list[dict]:
    """Optimizer parameter groups for (module, learning rate, weight decay) parts; frozen parameters left out.

    This is how differential learning rates are given (a low rate for the pretrained
    backbone, a higher one for the new head) and how an L2 penalty is put on the head only.
    """
    groups = []
    for module, lr, weight_decay in parts:
        trainable = [p for p in module.parameters() if p.requires_grad]
        if trainable:
            groups.append({"params": trainable, "lr": lr, "weight_decay": weight_decay})
    if not groups:
        raise ValueError("no trainable parameters in any part; unfreeze something before building the optimizer")
    return groups
