"""Decode once: content hashes of image files, and decoded, resized uint8 arrays cached on disk.

A cache entry is keyed by the sha256 of the ordered content hashes of the images (and masks)
plus the size, so renaming or moving a dataset keeps its cache and editing any file misses it.
Images are resized by scaling the shorter side to `size` and centre-cropping to a square, which
keeps the aspect ratio (dermoscopic lesions are centred); masks get the same geometry. Every mode
PIL reads is decoded faithfully (16/32-bit and float scaled by their depth, alpha composited,
palettes expanded) or refused by name; 8-bit RGB files decode exactly as `Image.convert("RGB")`.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ..errors import BenchboxError
from ..paths import atomic_write, cache_dir

MIN_SIDE = 16  # px: below this an image holds no lesion detail; upscaling it would only invent pixels
# Modes PIL reads that decode faithfully; anything else (LAB, HSV, La, ...) is refused by name.
COLOUR_MODES = ("1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr")  # PIL's own conversion to RGB
ALPHA_MODES = ("LA", "PA", "RGBA", "RGBa")  # composited on black, see _as_rgb
HIGH_DEPTH_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")  # one channel, scaled to 8 bits
SUPPORTED_MODES = COLOUR_MODES + ALPHA_MODES + HIGH_DEPTH_MODES
TIFF_BITS_PER_SAMPLE = 258  # the TIFF tag that declares a sample's bit depth


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
    """One image (uint8 size x size x 3) or mask (bool size x size), shorter side to size, centre crop.

    Any file that cannot become a faithful 8-bit RGB image (or binary mask) raises BadImageError,
    which `--on-bad-image` governs: undecodable bytes, a mode not in SUPPORTED_MODES, fewer than
    MIN_SIDE px on a side, more pixels than PIL's decompression-bomb limit.
    """
    try:
        with warnings.catch_warnings():
            # PIL only warns between its limit and twice it; both are a bad image here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_size(path, image)
                image.draft("L" if is_mask else "RGB", (size, size))  # JPEG: decode at a reduced scale
                image = _as_mask(image, path) if is_mask else _as_rgb(image, path)
                width, height = image.size
                scale = size / min(width, height)
                new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
                resample = Image.Resampling.NEAREST if is_mask else Image.Resampling.BILINEAR
                image = image.resize((new_w, new_h), resample, reducing_gap=None if is_mask else 2.0)
                left, top = (new_w - size) // 2, (new_h - size) // 2
                array = np.asarray(image.crop((left, top, left + size, top + size)))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadImageError(
            path,
            f"it has more pixels than the limit of {Image.MAX_IMAGE_PIXELS:,} (PIL's decompression-bomb guard: "
            f"{str(error).rstrip('.')})",
            "Downscale it (a few thousand px per side keep all dermoscopic detail)",
        ) from error
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, EOFError) as error:
        raise BadImageError(path, error) from error
    return array > 127 if is_mask else array


def _check_size(path: str, image: Image.Image) -> None:
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise BadImageError(
            path,
            f"it is {width}x{height} px, below the minimum of {MIN_SIDE} px per side (it would be upscaled from "
            "almost nothing)",
            "Replace it with the full-size image",
        )


def _unsupported(path: str, mode: str) -> BadImageError:
    return BadImageError(
        path,
        f"its colour mode {mode!r} is not one benchbox decodes (supported: {', '.join(SUPPORTED_MODES)})",
        "Save it as an 8-bit RGB PNG or JPEG",
    )


def _as_rgb(image: Image.Image, path: str) -> Image.Image:
    """8-bit RGB of any supported mode.

    Transparent pixels are composited on black rather than dropped: the colour an encoder leaves
    under alpha 0 is arbitrary, black is what a dermoscope shows outside its field, and opaque
    pixels (all of them in an image whose alpha channel is unused) keep their exact values.
    Grayscale modes give R = G = B, which the skin-tone measurement reads as "no skin tone".
    """
    mode = image.mode
    if mode in HIGH_DEPTH_MODES:
        return Image.fromarray(_levels_to_uint8(*_levels(image, path)), "L").convert("RGB")
    if mode in ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")
    if mode in COLOUR_MODES:
        return image.convert("RGB")
    raise _unsupported(path, mode)


def _as_mask(image: Image.Image, path: str) -> Image.Image:
    """A 0/255 L image of the lesion: a mask of two levels, the lower 0, marks every non-zero pixel
    (0/1, 0/255 and 0/65535 masks alike); any other mask is cut at half its range (8-bit: > 127)."""
    mode = image.mode
    if mode in HIGH_DEPTH_MODES:
        levels, top = _levels(image, path)
    elif mode in SUPPORTED_MODES:
        levels, top = np.asarray(image.convert("L")), 255
    else:
        raise _unsupported(path, mode)
    present = np.flatnonzero(np.bincount(levels.ravel())) if levels.dtype == np.uint8 else np.unique(levels)
    lesion = levels > 0 if len(present) == 2 and present[0] == 0 else levels > top / 2
    return Image.fromarray(lesion.astype(np.uint8) * 255, "L")


def _levels(image: Image.Image, path: str) -> tuple[np.ndarray, float]:
    """The raw values of a 16/32-bit or float image and the value that means full white: 2**bits - 1
    for the file's bit depth (TIFF BitsPerSample, else 16 for I;16*, else 16 or 32 by the values),
    1.0 for float. Values outside that range are refused, never clipped."""
    values = np.asarray(image)
    if image.mode == "F":
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if not (np.isfinite(values).all() and low >= 0.0 and high <= 1.0):
            raise BadImageError(
                path,
                f"it is a floating-point image with values from {low:g} to {high:g}; benchbox reads float "
                "images as 0 (black) to 1 (white)",
                "Save it as an 8- or 16-bit image, or rescale it to 0..1",
            )
        return values, 1.0
    declared = getattr(image, "tag_v2", {}).get(TIFF_BITS_PER_SAMPLE)
    if declared:
        bits = int(declared[0] if isinstance(declared, tuple) else declared)
    elif image.mode.startswith("I;16"):
        bits = 16
    else:
        bits = 16 if int(values.max(initial=0)) <= 65535 else 32
    top = 2**bits - 1
    low, high = int(values.min(initial=0)), int(values.max(initial=0))
    if low < 0 or high > top:
        raise BadImageError(
            path,
            f"its {bits}-bit samples range from {low} to {high}, outside 0..{top}",
            "Save it as an 8- or 16-bit image with non-negative values",
        )
    return values, float(top)


def _levels_to_uint8(values: np.ndarray, top: float) -> np.ndarray:
    """Scale 0..top to 0..255 with rounding (16-bit: v / 257 exactly for 8-bit data stored as v * 257)."""
    if values.dtype.kind == "f":
        return np.rint(values.astype(np.float64) * 255.0).astype(np.uint8)
    top = int(top)
    return ((values.astype(np.int64) * 255 + top // 2) // top).astype(np.uint8)


class BadImageError(BenchboxError):
    """An image file that cannot be decoded faithfully (truncated, not an image, odd mode or size)."""

    def __init__(self, path: str, error: Exception | str, fix: str = "Replace the file"):
        self.path = path
        self.reason = str(error)
        super().__init__(f"cannot read image {path}: {error}. {fix}, or pass --on-bad-image skip to leave it out.")


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
    # v2: high-depth, alpha and palette-transparency decoding and the size limits (8-bit RGB unchanged)
    key_text = "\n".join(image_hashes + ["masks"] + mask_hashes + [f"size={size}", "v2"])
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
