"""Individual Typology Angle (ITA), the colorimetric skin-tone proxy used for fairness subgroups.

ITA = arctan((L* - 50) / b*) * 180 / pi, computed per skin pixel in CIELAB (D65) and summarised
by the median, which ignores hair, ink and vignette pixels as long as they are a minority.
Skin pixels lie inside the image's inscribed circle (dermoscopes blacken the corners) and
outside the lesion mask dilated by a margin (so the lesion's blurry rim is not counted as skin)
or, without a mask, in an outer ring.

Colour correction first. A dermoscope's light and white balance tint every pixel: on real
HAM10000 a quarter of the images have a median skin ITA above 90 degrees (b* < 0: blue, not
skin), and the image source decides the category more than the skin does. One image cannot
separate the skin's colour from the light's, since both multiply the pixel; plain Shades of Gray
per image (Minkowski p = 6, the usual dermoscopy choice), which assumes the scene averages to
grey, makes skin grey, and the ITA of grey is +-90 degrees (measured on ham10000_more: median
87 degrees for every source). benchbox therefore corrects per image source (`source`, the
default): the images of one source share its light, so the light is the median log-chromaticity,
over the source's images, of the Shades-of-Gray estimate of their skin pixels, and a von Kries
(per-channel gain) correction of equal luminance maps that median to the colour of typical
light skin, REFERENCE_SKIN_LAB. Within a source every image gets the same gains, so its skin
tones keep their order and spread; what is removed is the difference between sources' lights.
The assumption, stated wherever corrected ITA is shown: each source's patients have, at the
median, the same skin hue. Images without a source form one source. `image` (plain per-image
Shades of Gray) and `none` (uncorrected, as the papers that report ITA used it) stay available.

Validity. After correction, a pixel whose colour cannot be skin is not counted: b* <= 0, L*
outside SKIN_LIGHTNESS (the dermoscope's black field, glare), or a clipped channel. An image
with fewer than MIN_VALID_SHARE of its skin region valid gets NaN with the reason, as does a
grayscale image (no colour to measure); the subgroup metrics treat NaN as missing.

The colour conversion, the Minkowski means (sequential cumulative sums) and the angle use
portable_math and explicit sums instead of numpy's CPU-dispatched power/cbrt/arctan2, BLAS and
SIMD reductions, so an image's skin tone category is the same on every machine.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import BenchboxError
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
NO_ESTIMATE_REASON = "no usable skin pixel to estimate the light from (in the image, or in any image of its source)"

CORRECTIONS = ("source", "image", "none")  # see the module docstring
SKIN_TONE_NOTE = "skin tone (ITA): "  # starts the dataset note that says how ITA was measured
DEFAULT_CORRECTION = "source"
SHADES_OF_GRAY_P = 6
# Typical light skin (ITA 45 degrees), the colour each source's median skin light is corrected
# to; only its chromaticity matters (the correction keeps luminance). It is also the median
# Shades-of-Gray colour of synthderm's skin under neutral light (hues a* 7-14, b* 13-20, less
# chroma at the extremes of lightness), so synthderm tests the estimation, not this assumption.
REFERENCE_SKIN_LAB = (65.0, 10.0, 15.0)
SKIN_LIGHTNESS = (15.0, 95.0)  # L* of a valid skin pixel lies strictly between
DARK_FIELD_LUMINANCE = 0.02  # linear Y (L* ~ 15.5) below which a pixel is the dermoscope's black field
MIN_VALID_SHARE = 0.2  # of the skin region, else the image gets NaN

RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def _inverse_3x3(m: np.ndarray) -> np.ndarray:
    """The inverse by cofactors, in a fixed order of operations (np.linalg.inv uses LAPACK/BLAS,
    whose kernels depend on the CPU)."""
    cofactors = np.array(
        [[m[(i + 1) % 3, (j + 1) % 3] * m[(i + 2) % 3, (j + 2) % 3] - m[(i + 1) % 3, (j + 2) % 3] * m[(i + 2) % 3, (j + 1) % 3]
          for j in range(3)] for i in range(3)]
    )
    determinant = m[0, 0] * cofactors[0, 0] + m[0, 1] * cofactors[0, 1] + m[0, 2] * cofactors[0, 2]
    return cofactors.T / determinant


_XYZ_TO_RGB = _inverse_3x3(RGB_TO_XYZ)


def _apply_3x3(matrix: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """vectors[..., 3] @ matrix.T, summed left to right (a matmul's BLAS order depends on the CPU)."""
    return np.stack([vectors[..., 0] * m[0] + vectors[..., 1] * m[1] + vectors[..., 2] * m[2] for m in matrix], axis=-1)


def lab_to_linear_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (D65) to linear sRGB."""
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f > 6 / 29, f * f * f, 3 * (6 / 29) * (6 / 29) * (f - 4 / 29)) * _D65_WHITE
    return _apply_3x3(_XYZ_TO_RGB, xyz)


def _srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    return np.where(srgb <= 0.04045, srgb / 12.92, pm.power((srgb + 0.055) / 1.055, 2.4))


_LINEAR_OF_UINT8 = _srgb_to_linear(np.arange(256) / 255.0)


def linear_to_lab(linear: np.ndarray) -> np.ndarray:
    """Linear sRGB (..., 3) to CIELAB (..., 3) under D65."""
    xyz = _apply_3x3(RGB_TO_XYZ, linear) / _D65_WHITE
    f = np.where(xyz > (6 / 29) * (6 / 29) * (6 / 29), pm.cbrt(xyz), xyz / (3 * (6 / 29) * (6 / 29)) + 4 / 29)
    lightness = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB (..., 3) to CIELAB (..., 3) under D65 (other dtypes: sRGB in 0..255)."""
    rgb = np.asarray(rgb)
    return linear_to_lab(_LINEAR_OF_UINT8[rgb] if rgb.dtype == np.uint8 else _srgb_to_linear(rgb.astype(np.float64) / 255.0))


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
    """(uncorrected median ITA in degrees over the skin pixels of one uint8 H x W x 3 image, "") or,
    where ITA says nothing, (NaN, the reason)."""
    if is_grayscale(image):
        return float("nan"), GRAYSCALE_REASON
    lab = rgb_to_lab(image[skin_region(*image.shape[:2], mask)])
    angles = pm.degrees(pm.arctan2(lab[:, 0] - 50.0, lab[:, 2]))
    return float(np.median(angles)), ""


def ita_degrees(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Uncorrected median ITA (degrees) over the skin pixels of one uint8 H x W x 3 image; NaN for a grayscale image."""
    return skin_tone(image, mask)[0]


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * RGB_TO_XYZ[1, 0] + rgb[..., 1] * RGB_TO_XYZ[1, 1] + rgb[..., 2] * RGB_TO_XYZ[1, 2]


def _usable(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels (n, 3) that are neither clipped nor the dermoscope's black field."""
    return (pixels.max(axis=-1) < 255) & (_luminance(_LINEAR_OF_UINT8[pixels]) > DARK_FIELD_LUMINANCE)


def light_estimate(image: np.ndarray, mask: np.ndarray | None = None, p: int = SHADES_OF_GRAY_P) -> np.ndarray:
    """The Shades-of-Gray estimate (linear RGB, 3) of one image's skin pixels: the Minkowski p-mean
    per channel, (mean x^p)^(1/p), over usable pixels; NaN when there are none or the image is gray."""
    pixels = image[skin_region(*image.shape[:2], mask)]
    pixels = pixels[_usable(pixels)]
    if is_grayscale(image) or len(pixels) == 0:
        return np.full(3, np.nan)
    linear = _LINEAR_OF_UINT8[pixels]
    powered = linear
    for _ in range(p - 1):
        powered = powered * linear
    mean = np.cumsum(powered, axis=0)[-1] / len(linear)  # a sequential sum: the same on every CPU
    return pm.power(mean, 1.0 / p)


def _gains_to(target: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Per-channel gains that give `estimate` the chromaticity of `target` and keep its luminance."""
    gains = target / estimate
    return gains * (_luminance(estimate) / _luminance(target))[..., None]


REFERENCE_SKIN_LINEAR = lab_to_linear_rgb(np.array(REFERENCE_SKIN_LAB))


def source_light(estimates: np.ndarray) -> np.ndarray:
    """A source's light (linear RGB, G = 1) from its images' estimates: the median log-chromaticity,
    log(R/G) and log(B/G). A per-channel median would mix chromaticity with the lightness mix of
    the source's patients (darker skin is more saturated): measured on synthderm, it left one site
    5.7 degrees off where the log-chromaticity median left it 2.0."""
    red = np.median(pm.log(estimates[:, 0] / estimates[:, 1]))
    blue = np.median(pm.log(estimates[:, 2] / estimates[:, 1]))
    return np.array([float(pm.exp(red)), 1.0, float(pm.exp(blue))])


def correction_gains(estimates: np.ndarray, sources: np.ndarray, correction: str) -> tuple[np.ndarray, dict]:
    """Gains (N x 3) per image for `correction` and, for `source`, each source's light and gains
    ({source: {"images", "light", "gains"}}). An image without an estimate gets NaN gains."""
    n = len(estimates)
    if correction == "none":
        return np.ones((n, 3)), {}
    if correction == "image":
        grey = np.repeat(_luminance(estimates)[:, None], 3, axis=1)
        return _gains_to(grey, estimates), {}
    if correction != "source":
        raise BenchboxError(f"ITA colour correction must be one of {', '.join(CORRECTIONS)}, not {correction!r}")
    names = np.array([str(s) if str(s).strip() else "(no source)" for s in sources], dtype=object)
    gains, lights = np.full((n, 3), np.nan), {}
    for name in sorted(set(names)):
        members = (names == name) & np.isfinite(estimates).all(axis=1) & (estimates > 0).all(axis=1)
        if not members.any():
            continue
        light = source_light(estimates[members])
        gains[names == name] = _gains_to(REFERENCE_SKIN_LINEAR, light)
        lights[name] = {"images": int(members.sum()), "light": light.tolist(), "gains": gains[names == name][0].tolist()}
    return gains, lights


def corrected_skin_tone(image: np.ndarray, mask: np.ndarray | None, gains: np.ndarray,
                        validity: bool = True) -> tuple[float, str]:
    """(median ITA over the valid skin pixels of one image after the gains, "") or (NaN, the reason);
    `validity=False` keeps every usable pixel, to measure what the correction alone does."""
    if is_grayscale(image):
        return float("nan"), GRAYSCALE_REASON
    if not np.isfinite(gains).all():
        return float("nan"), NO_ESTIMATE_REASON
    pixels = image[skin_region(*image.shape[:2], mask)]
    usable = _usable(pixels)
    lab = linear_to_lab(np.clip(_LINEAR_OF_UINT8[pixels[usable]] * gains, 0.0, 1.0))
    low, high = SKIN_LIGHTNESS
    valid = (lab[:, 2] > 0) & (lab[:, 0] > low) & (lab[:, 0] < high) if validity else np.ones(len(lab), bool)
    if valid.sum() < MIN_VALID_SHARE * len(pixels):
        return float("nan"), (f"fewer than {MIN_VALID_SHARE:.0%} of the skin pixels can be skin after colour correction "
                              f"(b* > 0, {low:g} < L* < {high:g}, not clipped)")
    angles = pm.degrees(pm.arctan2(lab[valid, 0] - 50.0, lab[valid, 2]))
    return float(np.median(angles)), ""


def skin_tones(images: np.ndarray, masks: list, sources: np.ndarray, correction: str = DEFAULT_CORRECTION,
               validity: bool = True) -> tuple[np.ndarray, list[str], dict]:
    """ITA per image (NaN where unmeasurable), the reason per image ("" where measured), and the
    per-source lights of a `source` correction; `masks[i]` is image i's lesion mask or None;
    `validity` as in `corrected_skin_tone`."""
    if correction == "none":
        tones = [skin_tone(image, mask) for image, mask in zip(images, masks)]
        return np.array([t[0] for t in tones], dtype=float), [t[1] for t in tones], {}
    estimates = np.array([light_estimate(image, mask) for image, mask in zip(images, masks)]).reshape(-1, 3)
    gains, lights = correction_gains(estimates, np.asarray(sources, dtype=object), correction)
    tones = [corrected_skin_tone(image, mask, g, validity) for image, mask, g in zip(images, masks, gains)]
    return np.array([t[0] for t in tones], dtype=float), [t[1] for t in tones], lights


def ita_category(degrees: float) -> str:
    """The standard six-way category of an ITA value ("" for NaN)."""
    if not np.isfinite(degrees):
        return ""
    return next(name for name, lower in ITA_CATEGORIES if degrees > lower)
