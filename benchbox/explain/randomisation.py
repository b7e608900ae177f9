"""Model-parameter randomisation (Adebayo et al. 2018): do an explainer's maps change when the weights do?

A map that survives re-initialising every weight of the network describes the image or a prior
(a centred blob), not the model. The check re-initialises a copy of the network cumulatively
from the top, in a few stages (the classifier head first, then the blocks below it), and
compares each stage's maps with the trained model's, per image: Spearman rank correlation and
SSIM of the per-map min-max normalised maps. Lower similarity means the maps depend on the model.

Our own implementation, not quantus.MPRT (0.6), which randomises one layer per stage (about 100
explanation passes for a ResNet-50), computes SSIM on flattened maps, averages the "original"
entry into its per-sample mean, reseeds torch's global generator before every layer, never
touches parameters of modules without `reset_parameters` and normalises by the batch maximum
(metrics/README.md, "Model-parameter randomisation"; tests/explain/test_randomisation.py pins each).

Only numpy and scipy are imported here; torch comes in where networks are touched, so the reports
can read `MPRT_THRESHOLD` without loading torch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.stats import rankdata

from .maps import normalise_maps

if TYPE_CHECKING:
    from torch import nn

# An explainer fails the check when its mean rank correlation with the trained model's maps is still
# above this once every weight is re-initialised: more than half of the map's rank order then comes
# from the image, the architecture or a prior, not from the learned weights. Halfway between unrelated
# (0) and unchanged (1); measured: gradient and Grad-CAM 0.1, a model-free map 1.0, SmoothGrad on
# Xception 0.8-0.9 (a border pattern two independently initialised Xceptions share).
MPRT_THRESHOLD = 0.5
MPRT_STAGES = 5  # explanation passes per explainer besides the trained model's: bounded cost at any depth
SSIM_WINDOW = 7  # skimage's default uniform window

Model = TypeVar("Model")


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def layer_blocks(network: nn.Module) -> list[tuple[str, nn.Module]]:
    """The network's parameterised blocks in definition order, each with its dotted name.

    The blocks are the network's children, where a block holding more than half of all parameters
    is a wrapper or a trunk (`backbone`, `features`), not a layer group, and is replaced by its own
    children, repeatedly (a ResNet-50 method: conv1, bn1, layer1-3, layer4.0-2, head). A block with
    parameters of its own besides its children stays whole, so every parameter belongs to one block.
    """
    total = _n_params(network)
    blocks = [("", network)] if total else []
    while True:
        index = next((i for i, (_, m) in enumerate(blocks) if 2 * _n_params(m) > total
                      and not list(m.parameters(recurse=False)) and any(_n_params(c) for c in m.children())), None)
        if index is None:
            return blocks
        prefix, module = blocks[index]
        children = [(f"{prefix}.{name}".lstrip("."), child) for name, child in module.named_children() if _n_params(child)]
        blocks[index : index + 1] = children


def randomisation_stages(network: nn.Module, n_stages: int = MPRT_STAGES) -> list[tuple[str, list[nn.Module]]]:
    """What each stage re-initialises, top first: the last block alone (the classifier head), then the
    blocks below it from the top in n_stages - 1 contiguous groups of nearly equal length (larger
    groups first). Stages are cumulative, so the last leaves no trained weight. A group's name
    joins its blocks' names with "+"."""
    if n_stages < 1:
        raise ValueError(f"n_stages must be at least 1, got {n_stages}")
    blocks = layer_blocks(network)[::-1]
    if not blocks:
        raise ValueError("the network has no parameters, so there is nothing to randomise")
    if n_stages == 1:
        groups = [blocks]
    else:
        rest = blocks[1:]
        parts = np.array_split(np.arange(len(rest)), n_stages - 1)
        groups = [blocks[:1]] + [[rest[i] for i in part] for part in parts if len(part)]
    return [("+".join(name for name, _ in group), [module for _, module in group]) for group in groups]


def reinitialise_(modules: Sequence[nn.Module], seed: int) -> None:
    """Re-initialise every weight of `modules` in place, reproducibly on any device.

    Each submodule with weights of its own and a `reset_parameters` takes its fresh default
    initialisation (a BatchNorm's running statistics reset too); weights of any other submodule are
    redrawn as N(0, 1) x their trained root-mean-square (the scale kept, the structure gone). All
    draws come from torch's CPU generator, seeded with `seed` and restored afterwards, so the caller's
    random state is untouched and a CUDA network gets the same weights as a CPU one.
    """
    import torch

    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        for module in modules:
            for sub in module.modules():
                own = [*sub.parameters(recurse=False), *sub.buffers(recurse=False)]
                if not own:
                    continue
                if hasattr(sub, "reset_parameters"):
                    device = own[0].device
                    sub.to("cpu").reset_parameters()
                    sub.to(device)
                    continue
                for param in sub.parameters(recurse=False):
                    rms = float(param.detach().double().pow(2).mean().sqrt()) or 1.0
                    param.copy_(torch.randn(param.shape, dtype=torch.float64) * rms)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of maps (average ranks for ties).

    A constant map has no rank order: two constant maps count as identical (1.0), a constant map
    against a structured one as unrelated (0.0), so a map that goes flat when the weights are
    destroyed counts as changed rather than dropping out as NaN.
    """
    ra = rankdata(a.reshape(len(a), -1), axis=1)
    rb = rankdata(b.reshape(len(b), -1), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    na, nb = np.linalg.norm(ra, axis=1), np.linalg.norm(rb, axis=1)
    both_flat = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(axis=1) / (na * nb)
    return np.where(both_flat, 1.0, np.where((na == 0) | (nb == 0), 0.0, np.clip(rho, -1.0, 1.0)))


def ssim_maps(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Mean SSIM of each pair of N x H x W maps, as skimage.metrics.structural_similarity computes it
    with its defaults (7 x 7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03, the border
    strip dropped), batched; `data_range` 1 for maps normalised to [0, 1]. The window shrinks to the
    largest odd size that fits maps smaller than 7 px."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    win = min(SSIM_WINDOW, min(a.shape[1:]) - (min(a.shape[1:]) + 1) % 2)
    if win < 3:
        raise ValueError(f"SSIM needs maps of at least 3 x 3 pixels, got {a.shape[1:]}; explain at a larger input size")
    size = (1, win, win)
    ux, uy = uniform_filter(a, size), uniform_filter(b, size)
    norm = win * win / (win * win - 1)
    vx = norm * (uniform_filter(a * a, size) - ux * ux)
    vy = norm * (uniform_filter(b * b, size) - uy * uy)
    vxy = norm * (uniform_filter(a * b, size) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (win - 1) // 2
    return s[:, pad : s.shape[1] - pad, pad : s.shape[2] - pad].mean(axis=(1, 2))


def map_similarity(reference: np.ndarray, maps: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image Spearman and SSIM between two N x H x W map sets, each map min-max normalised on its own."""
    reference, maps = normalise_maps(reference), normalise_maps(maps)
    if reference.shape != maps.shape:
        raise ValueError(f"maps {maps.shape} do not match the reference maps {reference.shape}")
    return {"spearman": spearman_rows(reference, maps), "ssim": ssim_maps(reference, maps, data_range=1.0)}


def model_randomisation_check(
    model: Model,
    explain: Callable[[Model], np.ndarray],
    networks: Callable[[Model], Sequence[nn.Module]] | None = None,
    n_stages: int = MPRT_STAGES,
    seed: int = 0,
    reference: np.ndarray | None = None,
) -> dict[str, Any]:
    """Cascading randomisation of a deep copy of `model`, top first; maps compared with the trained ones.

    `explain(m)` gives the N x H x W maps of `m` (fixed images and targets); `networks(m)` lists the
    torch modules `explain(m)` reads (default: `m` is the one network). Only a deep copy is changed:
    the caller's model keeps its weights. Every network of an ensemble loses the same stage's blocks
    at once, so the maps are averaged over members exactly as the deployed explainer averages them.
    `reference` skips recomputing the trained model's maps when the caller has them.

    Returns `stages` (names, top first), `spearman` and `ssim` (per image, after the last stage:
    every weight re-initialised; the numbers to summarise), and `spearman_curve` / `ssim_curve`
    (N x stages). Explanation passes: one per stage, plus one without `reference`.
    """
    clone = copy.deepcopy(model)
    nets = list(networks(clone)) if networks is not None else [clone]
    per_net = [randomisation_stages(net, n_stages) for net in nets]
    common = min(len(stages) for stages in per_net)
    per_net = [stages if len(stages) == common else randomisation_stages(net, common) for net, stages in zip(nets, per_net)]
    trained = np.asarray(explain(clone) if reference is None else reference)
    names, curves = [], {"spearman": [], "ssim": []}
    for index, stage in enumerate(zip(*per_net)):
        stage_names = list(dict.fromkeys(name for name, _ in stage))
        names.append(" | ".join(stage_names))
        reinitialise_([module for _, modules in stage for module in modules], seed + index)
        for key, values in map_similarity(trained, explain(clone)).items():
            curves[key].append(values)
    spearman, ssim = np.stack(curves["spearman"], axis=1), np.stack(curves["ssim"], axis=1)
    return {"stages": names, "spearman": spearman[:, -1], "ssim": ssim[:, -1],
            "spearman_curve": spearman, "ssim_curve": ssim}


def passes_randomisation_check(spearman: np.ndarray, threshold: float = MPRT_THRESHOLD) -> bool:
    """Whether the maps depend on the weights: mean rank correlation after full randomisation at most `threshold`."""
    values = np.asarray(spearman, dtype=np.float64)
    if not np.isfinite(values).any():
        raise ValueError("no finite similarity to judge; run model_randomisation_check on at least one image")
    return bool(np.nanmean(values) <= threshold)
