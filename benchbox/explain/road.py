"""ROAD (Rong et al. 2022): remove pixels by noisy linear imputation, so removal leaks no mask shape.

Our own implementation, because quantus' ROAD fails on RGB images and scores only the first
batch, and pytorch-grad-cam's thresholds by percentile so tied zeros are removed all at once.
Each removed pixel becomes the weighted mean of its 8 neighbours (weight 1/6 for the 4 direct,
1/12 for the 4 diagonal ones, renormalised at the border), solved jointly for all removed
pixels as one sparse linear system per image and fraction (all three colour channels share
the system), plus Gaussian noise. Images are uint8 in and out.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve
from tqdm import tqdm

from .faithfulness import PredictProba, check_inputs, target_probabilities
from .maps import pixel_ranks

NEIGHBOUR_WEIGHTS = (
    ((-1, 0), 1 / 6), ((1, 0), 1 / 6), ((0, -1), 1 / 6), ((0, 1), 1 / 6),
    ((-1, -1), 1 / 12), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((1, 1), 1 / 12),
)  # fmt: skip
DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def noisy_linear_impute(image: np.ndarray, removed: np.ndarray, noise_std: float, rng: np.random.Generator) -> np.ndarray:
    """Fill the `removed` pixels (H x W bool) of an H x W x 3 uint8 image; `noise_std` in grey levels.

    For removed pixel i: sum_j w_ij x_i - sum_{removed j} w_ij x_j = sum_{kept j} w_ij v_j over
    its in-image neighbours j. Every connected removed region borders a kept pixel unless the
    whole image is removed, so the system is non-singular whenever one pixel is kept.
    """
    height, width = removed.shape
    if removed.all():
        raise ValueError("noisy linear imputation needs at least one kept pixel")
    unknown = np.flatnonzero(removed)
    variable = np.full(height * width, -1)
    variable[unknown] = np.arange(len(unknown))
    rows_u, cols_u = np.divmod(unknown, width)
    pixels = image.reshape(-1, 3).astype(np.float64)
    diagonal = np.zeros(len(unknown))
    rhs = np.zeros((len(unknown), 3))
    a_rows, a_cols, a_vals = [np.arange(len(unknown))], [np.arange(len(unknown))], []
    for (dy, dx), weight in NEIGHBOUR_WEIGHTS:
        ny, nx = rows_u + dy, cols_u + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        neighbour = np.where(inside, ny * width + nx, 0)
        diagonal += weight * inside
        neighbour_var = np.where(inside, variable[neighbour], -1)
        kept = inside & (neighbour_var < 0)
        rhs[kept] += weight * pixels[neighbour[kept]]
        coupled = neighbour_var >= 0
        a_rows.append(np.flatnonzero(coupled))
        a_cols.append(neighbour_var[coupled])
        a_vals.append(np.full(coupled.sum(), -weight))
    matrix = coo_matrix(
        (np.concatenate([diagonal, *a_vals]), (np.concatenate(a_rows), np.concatenate(a_cols))),
        shape=(len(unknown), len(unknown)),
    ).tocsc()
    solution = spsolve(matrix, rhs).reshape(len(unknown), 3)
    pixels[unknown] = solution + rng.normal(0.0, noise_std, size=solution.shape)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8).reshape(image.shape)


def road_scores(
    predict_proba: PredictProba,
    images: np.ndarray,
    maps: np.ndarray,
    targets: np.ndarray,
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    max_images: int | None = 16,
    noise_std: float = 2.55,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """ROAD curves and their means on a seeded subsample of at most `max_images` images.

    MoRF removes the most relevant pixels first (a faithful map makes the target probability
    fall: lower is better), LeRF the least relevant first (it should stay high: higher is
    better). Scores are the mean target probability over `fractions` (each < 1). `noise_std`
    is 0.01 of the intensity range, as in the paper. Returns `index` (which images were
    scored), `road_morf`, `road_lerf` (one value per scored image) and the curves.
    """
    images, maps, targets = np.asarray(images), np.asarray(maps), np.asarray(targets, dtype=np.int64)
    check_inputs(images, maps, targets)
    if not all(0 < f < 1 for f in fractions):
        raise ValueError(f"ROAD fractions must lie strictly between 0 and 1, got {fractions}")
    rng = np.random.default_rng(seed)
    n, height, width, _ = images.shape
    index = np.arange(n) if max_images is None or max_images >= n else np.sort(rng.choice(n, max_images, replace=False))
    ranks = pixel_ranks(maps[index], rng).reshape(len(index), height, width)
    counts = np.round(np.asarray(fractions) * height * width).astype(np.int64)
    per_call = max(1, batch_size // (2 * len(counts)))
    curves = np.empty((len(index), 2, len(counts)))  # axis 1: MoRF, LeRF
    for start in tqdm(range(0, len(index), per_call), desc="ROAD", disable=not progress):
        stop = min(start + per_call, len(index))
        batch = np.stack(
            [
                noisy_linear_impute(images[index[i]], removed, noise_std, rng)
                for i in range(start, stop)
                for removed in [*(ranks[i] < counts[:, None, None]), *(ranks[i] >= height * width - counts[:, None, None])]
            ]
        )
        chunk_targets = np.repeat(targets[index[start:stop]], 2 * len(counts))
        probs = target_probabilities(predict_proba, batch, chunk_targets)
        curves[start:stop] = probs.reshape(stop - start, 2, len(counts))
    return {
        "index": index,
        "road_morf": curves[:, 0].mean(axis=1),
        "road_lerf": curves[:, 1].mean(axis=1),
        "morf_curve": curves[:, 0],
        "lerf_curve": curves[:, 1],
    }
