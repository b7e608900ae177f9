"""The centred-Gaussian "explanation": what a map scores by betting that the lesion is in the middle."""

from __future__ import annotations

import numpy as np

from .maps import normalise_maps


def centred_gaussian_map(height: int, width: int, sigma_fraction: float = 0.25) -> np.ndarray:
    """H x W float32 map in [0, 1]: a Gaussian centred on the image, std = sigma_fraction x each side.

    Dermoscopy centres the lesion, so a localisation score only means something if it beats
    this model-free map. Min-max normalised like every explainer's map (1 at the centre).
    """
    y = (np.arange(height) - (height - 1) / 2) / (sigma_fraction * height)
    x = (np.arange(width) - (width - 1) / 2) / (sigma_fraction * width)
    gauss = np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2))
    return normalise_maps(gauss[None])[0]
