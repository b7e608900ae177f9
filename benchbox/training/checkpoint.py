"""Checkpoints are state dicts (tensors only) plus a small JSON of settings: nothing that runs code on load."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from ..errors import BenchboxError
from ..paths import atomic_write

INFO_FILE = "checkpoint.json"
FORMAT = 1


def save_checkpoint(directory: Path, state_dicts: dict[str, dict[str, torch.Tensor]], info: dict[str, Any]) -> None:
    """Write `<name>.pt` per state dict and `checkpoint.json` = info (JSON-able) + the network names."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, state in state_dicts.items():
        cpu_state = {key: value.detach().cpu() for key, value in state.items()}
        atomic_write(directory / f"{name}.pt", lambda tmp, s=cpu_state: torch.save(s, tmp))
    text = json.dumps({"format": FORMAT, "networks": sorted(state_dicts), **info}, indent=2, sort_keys=True)
    atomic_write(directory / INFO_FILE, lambda tmp: Path(tmp).write_text(text + "\n"))


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """torch.load with weights_only=True: a file that pickles code or objects other than tensors is refused."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise BenchboxError(
            f"refused {path}: it carries pickled objects other than tensors (possibly code), and benchbox loads "
            f"state dicts only. Re-save it as torch.save(model.state_dict(), path). Detail: {error}"
        ) from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BenchboxError(f"refused {path}: it is not a state dict (a mapping of parameter names to tensors).")
    return state


def load_checkpoint(directory: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Read what `save_checkpoint` wrote: (state dicts by network name, info)."""
    directory = Path(directory)
    info_path = directory / INFO_FILE
    if not info_path.is_file():
        raise BenchboxError(f"{directory} holds no benchbox checkpoint ({INFO_FILE} is missing).")
    info = json.loads(info_path.read_text())
    if info.get("format") != FORMAT:
        raise BenchboxError(f"{info_path}: checkpoint format {info.get('format')!r} is not {FORMAT}; retrain the method.")
    states = {name: load_state_dict_file(directory / f"{name}.pt") for name in info["networks"]}
    return states, info
