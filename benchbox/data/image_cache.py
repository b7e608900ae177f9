"""Decode once: content hashes of image files, and decoded, resized uint8 arrays cached on disk.

A cache entry is keyed by the sha256 of the ordered content hashes of the images (and masks)
plus the size, so renaming or moving a dataset keeps its cache and editing any file misses it.
Images are resized by scaling the shorter side to `size` and centre-cropping to a square, which
keeps the aspect ratio (dermoscopic lesions are centred); masks get the same geometry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ..errors import BenchboxError
from ..paths import atomic_write, cache_dir


def _save_npz(path: str, arrays: dict) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def file_hashes(paths: list[str], progress: bool = True) -> list[str]:
    """sha256 of each file's bytes, remembered by (path, size, mtime) so a re-load reads nothing."""
    index_path = cache_dir() / "file_hashes.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    hashes, changed = [], False
    for path in tqdm(paths, desc="hashing images", unit="img", disable=not progress or len(paths) < 500):
        stat = os.stat(path)
        key = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"
        digest = index.get(key)
        if digest is None:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            index[key] = digest
            changed = True
        hashes.append(digest)
    if changed:
        atomic_write(index_path, lambda tmp: Path(tmp).write_text(json.dumps(index)))
    return hashes


def decode_resized(path: str, size: int, is_mask: bool = False) -> np.ndarray:
    """One image (uint8 size x size x 3) or mask (bool size x size), shorter side to size, centre crop."""
    try:
        with Image.open(path) as image:
            image.draft("L" if is_mask else "RGB", (size, size))  # JPEG: decode at a reduced scale
            image = image.convert("L" if is_mask else "RGB")
            width, height = image.size
            scale = size / min(width, height)
            new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
            resample = Image.Resampling.NEAREST if is_mask else Image.Resampling.BILINEAR
            image = image.resize((new_w, new_h), resample, reducing_gap=None if is_mask else 2.0)
            left, top = (new_w - size) // 2, (new_h - size) // 2
            array = np.asarray(image.crop((left, top, left + size, top + size)))
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise BadImageError(path, error) from error
    return array > 127 if is_mask else array


class BadImageError(BenchboxError):
    """An image file that cannot be decoded (truncated, not an image)."""

    def __init__(self, path: str, error: Exception):
        self.path = path
        super().__init__(
            f"cannot read image {path}: {error}. Replace the file, or pass --on-bad-image skip to leave it out."
        )


def cached_arrays(
    image_paths: list[str],
    mask_paths: list[str],
    image_hashes: list[str],
    mask_hashes: list[str],
    size: int,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decoded images (N x size x size x 3 uint8) and masks (N x size x size bool, or None when no
    image has a mask; an image without a mask gets an all-False mask) from the cache, decoding on a miss."""
    key_text = "\n".join(image_hashes + ["masks"] + mask_hashes + [f"size={size}", "v1"])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:32]
    path = cache_dir() / "arrays" / f"{key}_{size}.npz"
    if path.exists():
        with np.load(path) as stored:
            images = stored["images"]
            masks = stored["masks"] if "masks" in stored else None
        return images, masks
    n = len(image_paths)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    has_masks = any(mask_paths)
    masks = np.zeros((n, size, size), dtype=bool) if has_masks else None
    for i in tqdm(range(n), desc=f"decoding images at {size}px", unit="img", disable=not progress):
        images[i] = decode_resized(image_paths[i], size)
        if has_masks and mask_paths[i]:
            masks[i] = decode_resized(mask_paths[i], size, is_mask=True)
    arrays = {"images": images} if masks is None else {"images": images, "masks": masks}
    atomic_write(path, lambda tmp: _save_npz(tmp, arrays))
    return images, masks
