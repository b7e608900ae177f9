"""ImageNet weights for a backbone: a local folder first, then the torchvision / timm caches or hubs.

No training starts on a machine that cannot get the weights: methods call
`pretrained_state_dict` from `validate`, before any data is touched, and the error says how
to provide the weights or how to train from scratch instead.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from ..errors import BenchboxError

WEIGHT_SUFFIXES = (".pth", ".pt")


def _how_to_provide(arch: str) -> str:
    return (
        f"Provide them with --weights-dir DIR, where DIR/{arch}.pth is the model's state dict saved on a machine with "
        f"internet (torchvision: torch.save(torchvision.models.get_model('{arch}', weights='DEFAULT').state_dict(), "
        f"'DIR/{arch}.pth'); timm: torch.save(timm.create_model('{arch}', pretrained=True).state_dict(), 'DIR/{arch}.pth')), "
        "or train from scratch with --no-pretrained."
    )


def _local_file(arch: str, weights_dir: Path | None) -> Path | None:
    if weights_dir is None:
        return None
    for suffix in WEIGHT_SUFFIXES:
        path = Path(weights_dir) / f"{arch}{suffix}"
        if path.is_file():
            return path
    return None


def pretrained_state_dict(arch: str, weights_dir: Path | None = None) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of a torchvision or timm architecture (e.g. "resnet50", "legacy_xception").

    Looked for as `weights_dir/<arch>.pth` (or .pt) first, loaded with weights_only=True; then
    through torchvision's weight enum (its hub cache, downloading when online); then timm's
    `pretrained=True` (the Hugging Face cache). Raises BenchboxError saying how to provide
    the weights when none of them works.
    """
    local = _local_file(arch, weights_dir)
    if local is not None:
        try:
            state = torch.load(local, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, OSError) as error:
            raise BenchboxError(f"cannot load pretrained weights {local} as a plain state dict: {error}") from error
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise BenchboxError(f"{local} is not a state dict (a mapping of parameter names to tensors).")
        return state
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    except ValueError:
        weights = None
    try:
        if weights is not None:
            return weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
        import timm

        if not timm.is_model_pretrained(arch):
            raise BenchboxError(f"no pretrained weights are known for architecture {arch!r}. {_how_to_provide(arch)}")
        return timm.create_model(arch, pretrained=True).state_dict()
    except BenchboxError:
        raise
    except Exception as error:  # network, cache and hub errors come in many types
        where = f" (looked in {weights_dir} first)" if weights_dir is not None else ""
        raise BenchboxError(
            f"pretrained ImageNet weights for {arch!r} are not available{where}: {type(error).__name__}: {error}. "
            + _how_to_provide(arch)
        ) from error


def load_pretrained(module: nn.Module, state: dict[str, torch.Tensor], ignore_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Copy `state` into `module` where names and shapes match; return the module keys left as initialised.

    Keys under `ignore_prefixes` (the ImageNet classifier, replaced by the method's head) may
    stay uninitialised; any other key left over means the weights do not fit the
    architecture, and raises.
    """
    own = module.state_dict()
    matched = {key: value for key, value in state.items() if key in own and own[key].shape == value.shape}
    left = [key for key in own if key not in matched]
    unexpected = [key for key in left if not key.startswith(ignore_prefixes)]
    if unexpected:
        raise BenchboxError(
            f"the pretrained weights do not fit {type(module).__name__}: {len(unexpected)} parameters have no match "
            f"(first: {unexpected[:3]}); check that the weights file is for this architecture."
        )
    module.load_state_dict(matched, strict=False)
    return left
