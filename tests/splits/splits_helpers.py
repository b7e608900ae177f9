"""Helpers for the split tests: lesion-like images and manifests built directly (no adapter)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from benchbox.data.manifest import make_manifest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
HAM_METADATA = SHARED_DATA / "ham10000_sample" / "HAM10000_metadata.csv"


def lesion_image(seed: int, size: tuple[int, int] = (120, 90)) -> Image.Image:
    """A dermoscopy-like picture: shaded skin with 1-3 dark blended ellipses, noise and blur.

    Distinct seeds give images as alike as real lesions are (their phashes differ by >= 70
    of 256 bits, like real HAM10000 images), so a false merge would show.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[:h, :w]
    skin = np.array([rng.uniform(170, 230), rng.uniform(120, 170), rng.uniform(100, 150)])
    shade = 1 + 0.15 * ((xx / w) * rng.uniform(-1, 1) + (yy / h) * rng.uniform(-1, 1))
    pixels = skin[None, None, :] * shade[..., None]
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
        ax, ay = rng.uniform(0.08, 0.3) * w, rng.uniform(0.08, 0.3) * h
        angle = rng.uniform(0, np.pi)
        u = ((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)) / ax
        v = (-(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)) / ay
        inside = np.clip(1.2 - (u**2 + v**2), 0, 1)[..., None]
        colour = np.array([rng.uniform(60, 140), rng.uniform(30, 90), rng.uniform(20, 70)])
        pixels = pixels * (1 - inside) + colour * inside
    pixels += rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))


def manifest_from(rows: list[dict], origin: str = "test") -> pd.DataFrame:
    """A checked manifest from rows holding image_id, lesion_id, dx and optionally path."""
    frame = pd.DataFrame(rows)
    defaults = {"path": "", "age": 50.0, "sex": "female", "localization": "back", "source": "t", "dx_type": "histo"}
    for column, value in defaults.items():
        if column not in frame:
            frame[column] = value
    return make_manifest(frame, origin)


def metadata_manifest_of_lesions(images_per_lesion: list[int], labels: list[str]) -> pd.DataFrame:
    """Metadata-only manifest: lesion k has images_per_lesion[k] images, all labelled labels[k]."""
    rows = [
        {"image_id": f"IMG_{k:05d}_{i}", "lesion_id": f"LES_{k:05d}", "dx": labels[k]}
        for k, count in enumerate(images_per_lesion)
        for i in range(count)
    ]
    return manifest_from(rows)
