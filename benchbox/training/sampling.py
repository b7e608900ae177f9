"""Answers to class imbalance: class weights, duplicate oversampling, synthetic minority samples.

HAM10000 is 67% nevi and 1% dermatofibroma; the papers hosted here counter that by weighting
the loss, by repeating minority images, or by synthesising new minority images.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from ..data.arrays import ImageSet


def balanced_class_weights(targets: np.ndarray, n_classes: int) -> np.ndarray:
    """n_samples / (n_present_classes * count_c), scikit-learn's "balanced" rule; absent classes get 0.

    An absent class never appears as a target, so its weight never enters the loss; 0 makes
    that explicit instead of inventing a value.
    """
    counts = np.bincount(np.asarray(targets), minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def oversample_targets(targets: np.ndarray, n_classes: int, fraction: float) -> np.ndarray:
    """Per class, the count to reach: at least `fraction` of the largest class (1.0 = balanced)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"oversampling fraction must be in (0, 1], got {fraction}")
    counts = np.bincount(np.asarray(targets), minlength=n_classes)
    goal = int(np.ceil(fraction * counts.max()))
    return np.where(counts > 0, np.maximum(counts, goal), 0)


def duplicate_oversampling(targets: np.ndarray, n_classes: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Every index once, plus minority indices drawn again (with replacement) up to the target counts.

    The result is an epoch's index list for `train_loader`, which shuffles it.
    """
    targets = np.asarray(targets)
    goal = oversample_targets(targets, n_classes, fraction)
    extra = [
        rng.choice(np.flatnonzero(targets == c), size=goal[c] - (targets == c).sum(), replace=True)
        for c in range(n_classes)
        if goal[c] > (targets == c).sum()
    ]
    return np.concatenate([np.arange(len(targets)), *extra]).astype(np.int64)


def _thumbnails(images: np.ndarray, side: int = 8) -> np.ndarray:
    """Block-mean thumbnails (N x side*side*3), the space in which neighbours are looked for."""
    n, height, width, _ = images.shape
    bh, bw = height // side, width // side
    if bh == 0 or bw == 0:
        return images.reshape(n, -1).astype(np.float32)
    cropped = images[:, : bh * side, : bw * side].astype(np.float32)
    return cropped.reshape(n, side, bh, side, bw, 3).mean(axis=(2, 4)).reshape(n, -1)


def synthetic_oversampling(
    data: ImageSet,
    targets: np.ndarray,
    n_classes: int,
    fraction: float,
    rng: np.random.Generator,
    neighbours: int = 5,
) -> tuple[ImageSet, np.ndarray]:
    """SMOTE in image space: new minority images that combine existing images of their class.

    For each new sample of class c: pick a random image of c, one of its `neighbours` nearest
    same-class images (Euclidean distance on 8 x 8 colour thumbnails, so partners look alike),
    and lambda ~ U(0, 1); the new image is (1 - lambda) * image + lambda * partner. A class
    with a single image can only repeat it. The synthetic samples are appended to `data`
    with the label, group and mask of the parent they are closer to (lambda < 0.5: the
    first), so grouped splitting still sees them as that lesion. Returns the enlarged set and
    its targets.
    """
    targets = np.asarray(targets)
    goal = oversample_targets(targets, n_classes, fraction)
    firsts, partners, lambdas = [], [], []
    for c in range(n_classes):
        members = np.flatnonzero(targets == c)
        needed = goal[c] - len(members)
        if needed <= 0:
            continue
        k = min(neighbours, len(members) - 1)
        base = rng.integers(0, len(members), size=needed)
        if k == 0:
            partner = base
        else:
            # the nearest neighbour of each image is itself, so ask for k + 1 and drop column 0
            found = NearestNeighbors(n_neighbors=k + 1).fit(_thumbnails(data.images[members]))
            _, neighbour_index = found.kneighbors(_thumbnails(data.images[members]))
            partner = neighbour_index[base, 1 + rng.integers(0, k, size=needed)]
        firsts.append(members[base])
        partners.append(members[partner])
        lambdas.append(rng.random(needed))
    if not firsts:
        return data, targets
    first, partner, lam = np.concatenate(firsts), np.concatenate(partners), np.concatenate(lambdas)
    mixed = np.empty((len(first), *data.images.shape[1:]), dtype=np.uint8)
    for start in range(0, len(first), 256):  # bounded float memory at 224 px
        part = slice(start, start + 256)
        weight = lam[part, None, None, None].astype(np.float32)
        blend = (1 - weight) * data.images[first[part]] + weight * data.images[partner[part]]
        mixed[part] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    dominant = np.where(lam < 0.5, first, partner)
    synthetic = ImageSet(
        image_ids=np.array([f"synthetic-{i}" for i in range(len(first))], dtype=object),
        images=mixed,
        labels=data.labels[dominant],
        groups=data.groups[dominant],
        masks=None if data.masks is None else data.masks[dominant],
    )
    combined = ImageSet(
        image_ids=np.concatenate([np.asarray(data.image_ids, dtype=object), synthetic.image_ids]),
        images=np.concatenate([data.images, synthetic.images]),
        labels=np.concatenate([data.labels, synthetic.labels]),
        groups=np.concatenate([data.groups, synthetic.groups]),
        masks=None if data.masks is None else np.concatenate([data.masks, synthetic.masks]),
    )
    return combined, np.concatenate([targets, targets[dominant]])
