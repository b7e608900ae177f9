"""Individual Typology Angle (ITA), the colorimetric skin-tone proxy used for fairness subgroups.

ITA = arctan((L* - 50) / b*) * 180 / pi, computed per skin pixel in CIELAB (D65) and summarised
by the median, which ignores hair, ink and vignette pixels as long as they are a minority.
Skin pixels lie inside the image's inscribed circle (dermoscopes blacken the corners) and
outside the lesion mask dilated by a margin (so the lesion's blurry rim is not counted as skin)
or, without a mask, in an outer ring. The colour conversion and the angle use portable_math and
explicit sums instead of numpy's CPU-dispatched power/cbrt/arctan2 and BLAS, so an image's skin
tone category is the same on every machine. A grayscale image has no skin tone: NaN, with a reason,
and an empty category, which the subgroup metrics treat as missing.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import portable_math as pm

# (name, lower bound in degrees), from lightest to darkest; the standard six categories.
ITA_CATEGORIES = (
    ("very_light", 55.0),
    ("light", 41.0),
    ("intermediate", 28.0),
    ("tan", 10.0),
    ("brown", -30.0),
    ("dark", -np.inf),
)
LIGHT_DARK_CUT = 28.0  # the recall-ensemble paper's light/dark cut
# A grayscale image has b* = 0 everywhere, so its ITA would be +-90 degrees ("very_light" or
# "dark") whatever the skin. Up to 2 levels of channel difference is still gray: recompressing
# or resizing a gray picture saved as RGB leaves that much rounding noise; skin differs by tens.
GRAY_TOLERANCE = 2
GRAYSCALE_REASON = "a grayscale image (R = G = B) has no colour to measure skin tone from"

_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def _srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    return np.where(srgb <= 0.04045, srgb / 12.92, pm.power((srgb + 0.055) / 1.055, 2.4))


_LINEAR_OF_UINT8 = _srgb_to_linear(np.arange(256) / 255.0)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB (..., 3) to CIELAB (..., 3) under D65 (other dtypes: sRGB in 0..255)."""
    rgb = np.asarray(rgb)
    linear = _LINEAR_OF_UINT8[rgb] if rgb.dtype == np.uint8 else _srgb_to_linear(rgb.astype(np.float64) / 255.0)
    xyz = np.stack(  # linear @ _RGB_TO_XYZ.T, summed in a fixed order
        [linear[..., 0] * m[0] + linear[..., 1] * m[1] + linear[..., 2] * m[2] for m in _RGB_TO_XYZ], axis=-1
    ) / _D65_WHITE
    f = np.where(xyz > (6 / 29) * (6 / 29) * (6 / 29), pm.cbrt(xyz), xyz / (3 * (6 / 29) * (6 / 29)) + 4 / 29)
    lightness = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def skin_region(height: int, width: int, mask: np.ndarray | None) -> np.ndarray:
    """Boolean map of the pixels treated as skin (see the module docstring)."""
    yy, xx = np.mgrid[:height, :width]
    radius = pm.hypot(yy - (height - 1) / 2, xx - (width - 1) / 2) / (min(height, width) / 2)
    inside_field = radius <= 0.98
    if mask is not None and mask.any():
        margin = max(1, round(0.03 * min(height, width)))
        region = ~ndimage.binary_dilation(mask.astype(bool), iterations=margin) & inside_field
        if region.sum() >= 0.02 * height * width:
            return region
    return (radius >= 0.75) & inside_field


def is_grayscale(image: np.ndarray) -> bool:
    """True when no pixel's channels differ by more than GRAY_TOLERANCE levels (R = G = B)."""
    channels = np.asarray(image, dtype=np.int16)
    return bool((channels.max(axis=-1) - channels.min(axis=-1)).max(initial=0) <= GRAY_TOLERANCE)


def skin_tone(image: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, str]:
    """(median ITA in degrees over the skin pixels of one uint8 H x W x 3 image, "") or, where ITA
    says nothing, (NaN, the reason)."""
    if is_grayscale(image):
        return float("nan"), GRAYSCALE_REASON
    lab = rgb_to_lab(image[skin_region(*image.shape[:2], mask)])
    angles = pm.degrees(pm.arctan2(lab[:, 0] - 50.0, lab[:, 2]))
    return float(np.median(angles)), ""


def ita_degrees(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Median ITA (degrees) over the skin pixels of one uint8 H x W x 3 image; NaN for a grayscale image."""
    return skin_tone(image, mask)[0]


def ita_category(degrees: float) -> str:
    """The standard six-way category of an ITA value ("" for NaN)."""
    if not np.isfinite(degrees):
        return ""
    return next(name for name, lower in ITA_CATEGORIES if degrees > lower)
