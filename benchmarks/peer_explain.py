"""Explanation metrics: benchbox vs Quantus and pytorch-grad-cam on the same model, images and maps.

The model takes float N x 3 x H x W images in [0, 255] and normalises inside, so the same module
serves benchbox (uint8 N x H x W x 3 through `predict_proba`) and the peers (float tensors).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from .peer_values import Row, compare

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalised(nn.Module):
    """A classifier on [0, 255] pixel values: ImageNet normalisation, then the network."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


def untrained_resnet18(n_classes: int = 7, seed: int = 0) -> Normalised:
    """A from-scratch torchvision ResNet-18 (no weights can be downloaded here), in eval mode."""
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    return Normalised(resnet18(num_classes=n_classes)).eval()


def predict_proba_of(model: nn.Module, batch_size: int = 64):
    """benchbox's model interface: uint8 N x H x W x 3 -> softmax probabilities N x C."""
    def predict_proba(images: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).permute(0, 3, 1, 2).float()
                out.append(torch.softmax(model(x), dim=1).numpy())
        return np.concatenate(out)
    return predict_proba


def as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()


def tie_free(maps: np.ndarray, seed: int = 0) -> np.ndarray:
    """Maps plus a tiny seeded jitter, renormalised: no two pixels tie, so every library ranks them alike.

    Grad-CAM maps have plateaus of zeros; benchbox breaks ties at random, Quantus by argsort order,
    pytorch-grad-cam by percentile thresholds, which is a definitional difference of its own.
    """
    from benchbox.explain.maps import normalise_maps

    rng = np.random.default_rng(seed)
    return normalise_maps(maps + 1e-3 * rng.random(maps.shape, dtype=np.float32))


def localisation_rows(maps: np.ndarray, masks: np.ndarray) -> list[Row]:
    """Pointing game, relevance mass and relevance rank: benchbox's localisation scores vs Quantus."""
    import quantus

    from benchbox.explain.localisation import energy_pointing_game, iou_at_mask_area, pointing_game

    s = f"values: Quantus {quantus.__version__} localisation"
    n = len(maps)
    x = np.zeros((n, 3, *maps.shape[1:]), np.float32)
    y = np.zeros(n, dtype=int)
    common = dict(normalise=False, abs=False, disable_warnings=True)
    call = dict(model=None, x_batch=x, y_batch=y, a_batch=maps[:, None], s_batch=masks[:, None].astype(np.float32))
    hits = np.asarray(quantus.PointingGame(**common)(**call), dtype=float)
    mass = np.asarray(quantus.RelevanceMassAccuracy(**common)(**call), dtype=float)
    rank = np.asarray(quantus.RelevanceRankAccuracy(**common)(**call), dtype=float)
    ours_iou = iou_at_mask_area(maps, masks)
    return [
        compare(s, "PointingGame", "pointing_game", pointing_game(maps, masks), hits, 0.0,
                "empty masks differ by definition (Quantus: True, benchbox: NaN); every mask here is non-empty"),
        compare(s, "RelevanceMassAccuracy", "energy_pointing_game", energy_pointing_game(maps, masks), mass, 1e-5),
        compare(s, "RelevanceRankAccuracy", "iou_at_mask_area", ours_iou, rank, 1e-6,
                "definition differs: Quantus' rank accuracy is |top-K ∩ M| / K (K = |M|), benchbox's is the IoU "
                "|top-K ∩ M| / |top-K ∪ M| = r / (2 - r); converted = r / (2 - r)",
                converted=rank / (2 - rank)),
    ]


def mean_colour_replacement(images: np.ndarray):
    """A Quantus perturb_func that puts each image's rounded mean colour (benchbox's deletion baseline) at the
    flattened C x H x W indices it is given; Quantus' own "mean" is one grey value over all channels."""
    mean_colour = images.mean(axis=(1, 2)).round().astype(np.float32)  # N x 3
    plane = images.shape[1] * images.shape[2]

    def perturb(arr, indices, **kwargs):
        out = arr.copy()
        rows = np.arange(len(arr))[:, None]
        out[rows, indices] = mean_colour[np.arange(len(arr))[:, None], indices // plane]
        return out
    return perturb


def pixel_flipping_curves(model, images, maps, targets, steps, baseline="mean_colour"):
    """Quantus PixelFlipping curves (N x steps), one prediction after each step of HW/steps pixels.

    `return_auc_per_sample=True` calls `np.trapz`, which numpy 2.4 removed; the curves are taken
    instead and integrated here. Attributions are repeated over the 3 channels and a step flips
    3 x HW/steps features, i.e. HW/steps whole pixels (the maps are tie-free).
    """
    import quantus

    n, h, w, _ = images.shape
    if (h * w) % steps:
        raise ValueError(f"{h}x{w} pixels do not split into {steps} equal steps")
    kwargs = dict(features_in_step=3 * h * w // steps, normalise=False, abs=False, disable_warnings=True,
                  return_auc_per_sample=False)
    if baseline == "mean_colour":
        kwargs["perturb_func"] = mean_colour_replacement(images)
    else:
        kwargs["perturb_baseline"] = baseline
    metric = quantus.PixelFlipping(**kwargs)
    x = as_tensor(images).numpy()
    a = np.repeat(maps[:, None], 3, axis=1)
    curves = metric(model=model, x_batch=x, y_batch=np.asarray(targets), a_batch=a, softmax=True,
                    device="cpu", batch_size=len(images), channel_first=True)
    return np.asarray(curves, dtype=np.float64)


def faithfulness_rows(model, images, maps, targets, steps) -> tuple[list[Row], tuple[float, float]]:
    """benchbox's deletion curve vs Quantus PixelFlipping's, same baseline (each image's mean colour),
    and the seconds each call took (benchbox's computes the insertion curve too)."""
    import quantus

    from benchbox.explain.faithfulness import deletion_insertion_auc

    start = time.perf_counter()
    ours = deletion_insertion_auc(predict_proba_of(model), images, maps, targets, steps=steps)
    middle = time.perf_counter()
    theirs = pixel_flipping_curves(model, images, maps, targets, steps)
    seconds = (middle - start, time.perf_counter() - middle)
    s = f"values: Quantus {quantus.__version__} PixelFlipping"
    return [
        compare(s, "PixelFlipping(return_auc_per_sample=False), perturb_func = mean colour",
                f"deletion curve, steps 1..{steps} ({len(images)} images)", ours["deletion_curve"][:, 1:], theirs, 1e-5,
                "Quantus' AUC (np.trapz, dx = 1, no intact-image point) fails on numpy 2.4 and differs in scale; "
                "its curves are compared. Quantus' own perturb_baseline='mean' is one grey level over all "
                "channels, benchbox's is each image's mean colour, so the same baseline is passed as perturb_func"),
        compare(s, "PixelFlipping curves", "deletion_auc", ours["deletion_auc"], np.trapezoid(theirs, axis=1), 1e-5,
                "definition differs: Quantus' AUC is np.trapz(dx = 1) of the curve after each step (no intact-image "
                "point, area in steps); benchbox's is the trapezoid over the removed fraction in [0, 1] from the "
                "intact image; converted = benchbox's trapezoid of [intact, Quantus' curve]",
                converted=_trapezoid(np.column_stack([ours["deletion_curve"][:, 0], theirs]))),
    ], seconds


def _trapezoid(curves: np.ndarray) -> np.ndarray:
    return ((curves[:, 1:] + curves[:, :-1]) / 2).mean(axis=1)


def gradcam_road(model, images, maps, targets, fractions, noise: float):
    """pytorch-grad-cam's ROAD (MoRF and LeRF mean probability over `fractions`), imputer noise `noise`."""
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric, RemoveLeastRelevantFirst, RemoveMostRelevantFirst)
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    x = as_tensor(images)
    cam_targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in targets]
    morf, lerf = [], []
    for f in fractions:
        percentile = round(100 * (1 - f))
        most = PerturbationConfidenceMetric(RemoveMostRelevantFirst(percentile, NoisyLinearImputer(noise=noise)))
        least = PerturbationConfidenceMetric(RemoveLeastRelevantFirst(percentile, NoisyLinearImputer(noise=noise)))
        morf.append(most(x, maps, cam_targets, model, return_diff=False))
        lerf.append(least(x, maps, cam_targets, model, return_diff=False))
    return np.mean(morf, axis=0), np.mean(lerf, axis=0)
