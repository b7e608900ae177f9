"""synthderm: the embedded synthetic dermoscopy dataset, written in the HAM10000 release layout.

Why: `benchbox run --all` must work on a fresh machine with no download, and the harness's
claims (leakage inflates scores, skin tone changes accuracy, artefacts can be shortcuts) need a
dataset whose answers are planted and known. `generate` writes `HAM10000_metadata.csv`,
`HAM10000_images_part_1/SYN_nnnnnnn.jpg`, `HAM10000_segmentations_lesion_tschandl/
SYN_nnnnnnn_segmentation.png` (exact 0/255 lesion masks) and `synthderm_truth.csv` (the planted
answers: per image its lesion, class, mimicked class, site, ITA, hair/ruler/ink flags, pose), so
the ordinary ham10000 adapter reads it; with `artefact_masks=True` also
`synthderm_ink_masks/SYN_nnnnnnn_ink.png` (0/255) for each image with an ink marker.

Generative model (every random draw comes from `numpy.random.default_rng((seed, lesion, stream))`,
so a lesion's images do not depend on the order or the process that renders them):

* Classes. Exact per-class lesion counts follow HAM10000's priors (nv 67%, mel 11%, bkl 11%,
  bcc 5.1%, akiec 3.3%, vasc 1.4%, df 1.2%) with a floor of 4% of lesions per class, taken from
  nv, so that the rare classes are learnable and a 15% test split still holds ~12 images of each
  in the default dataset (default counts: nv 911, mel 167, bkl 165, bcc 77, akiec 60, df 60,
  vasc 60 lesions).
* Lesion, in its own coordinates (radius 1). The border is r(theta) = 1 + low harmonics
  (asymmetry) + high harmonics (irregularity) + narrow bumps (pseudopods), on an ellipse; the mask
  is r < r(theta) exactly (the support of the lesion's pigment), and pigment fades to zero at the
  border over a class-dependent width (nevi and akiec blurry, bkl and vasc sharp). Colour is
  Beer-Lambert absorption in linear RGB by
  four maps: epidermal melanin (brown-black), dermal melanin (blue-grey), haemoglobin (red) and
  white (scar, regression, scale, milia), built from class-dependent structures: pigment network
  (regular or atypical), brown/black dots and globules (regular or peripheral), blue-grey ovoid
  nests, blue-white veil, regression with peppering, arborising vessels, dotted vessels, red-purple
  lacunae with pale septa, central white scar, surface scale, cerebriform fissures, comedo-like
  openings, milia-like cysts, ulceration, eccentric dark blotches. Typical looks: nv symmetric,
  uniform brown, regular network or globules; mel asymmetric, irregular, multicoloured, atypical
  network, peripheral black dots, veil, regression; bkl sharp border, fissures, comedos, milia;
  bcc pinkish, no network, arborising vessels, blue nests, ulcer; akiec red, blurry, scale, dotted
  vessels; df small, central white scar, peripheral delicate network; vasc red-purple lacunae.
* Overlap. Every parameter is drawn from overlapping per-class ranges, each lesion's melanin is
  tinted a little redder or greyer, and 20-30% of lesions mimic a confusable class (`looks_like`
  in the truth file): each of their parameters comes from the mimicked class with probability
  0.8. Colour statistics therefore separate the classes well above chance but far from perfectly:
  on the default dataset a logistic regression on per-image colour statistics reaches a
  balanced accuracy of about 0.5 (chance 0.14) and a malignant-vs-benign AUC of about 0.76 on a
  lesion-grouped split, and scores higher on an image-level split (leakage).
* Images of a lesion. Lesions have 1-4 images, with HAM10000's per-class rates of multi-image
  lesions (nv 18% ... mel 62%); the images differ in rotation, scale, position, exposure (ITA
  +-1.5 degrees) and hair, but show the same structures at the same places, so an image-level
  split leaks. 10% of multi-image lesions have one image stored under a new lesion_id, as
  HAM10000 does (`relabelled` and `true_lesion_id` in the truth file).
* Skin tone. Each lesion gets a target ITA spread over all six categories (very light 22%,
  light 22%, intermediate 18%, tan 16%, brown 14%, dark 8%). The skin colour is set in CIELAB so
  that arctan((L* - 50) / b*) equals the image's planted ITA under neutral light, before the
  site's optics: as real skin sits under a real dermoscope, the site's light then shifts the
  ITA one measures from the pixels (by +30 degrees at the median on the bluish synth_modern), and
  colour-corrected ITA (`benchbox.data.ita`) must recover the planted one. Skin texture is
  mean-free and vignetting mild. Lesion pigment is scaled by `contrast_factor`: by default
  ("graded") from 0.5 at ITA <= -40 linearly up to 1.0 at ITA >= 50, so lesions have lower
  contrast on darker skin: the median CIE76 difference of the lesion's mean colour from the
  skin is ~9 graded vs ~14 equal at ITA < -30, ~15 vs ~20 at ITA <= 28, ~27 either way above.
  `lesion_contrast` sets the floor at ITA <= -40 ("equal": 1.0 everywhere; a float: a stronger
  or weaker ramp). What the ramp costs a classifier is small: for a logistic regression on
  whole-image colour percentiles (1,500 lesions, 64 px, 5-fold lesion-grouped), the malignant
  AUC on ITA <= 28 minus that on ITA > 28 is +0.03 with equal contrast, +0.02 graded, -0.01 at
  floor 0.25 and -0.02 at floor 0.1: the pigment is fainter but, noise being low, still tells.
* Artefacts (hair, ruler, ink), drawn per image. Their rates are class-independent by default
  (hair 35%, ruler 12%, ink 6%); `artefact_correlation` plants a class association (see
  `generate`). The flags come from the same uniform draws whatever the rates, and the shapes of
  the artefacts an image has at the default rates are drawn first from its render stream (absent
  ones too), any other from a stream of its own: so datasets that differ only in
  `artefact_correlation` are counterfactual pairs, alike in everything but the artefacts (skin,
  lesion, sensor noise; an image with the same flags has the same bytes). Ink masks
  (`artefact_masks`) mark the pixels whose colour is more than INK_MASK_THRESHOLD (a quarter)
  marker before the site's blur: the visibly violet line, without its faint anti-aliased fringe.
* Sites (the `dataset` column): four imaging set-ups with different light colours (per-channel
  gains of equal luminance, from bluish to reddish like HAM10000's sources), saturation, vignetting, circular field stop, blur and sensor noise. Like HAM10000's
  sources, sites see classes in different proportions (HAM10000's source x class table mixed half
  and half with a uniform one), a mild confounder that makes per-source subgroup gaps meaningful.
* Metadata, per lesion: age (class-dependent mean and sd as in HAM10000, rounded to 5, 0.6%
  missing), sex (class-dependent male share, 0.6% 'unknown'), localization and dx_type drawn from
  HAM10000's class-conditional tables.

Defaults (1,500 lesions, about 2,100 images, 128 px): enough images per class for a quick
profile to learn and to evaluate every class (>= 80 images of the rarest), small enough to
generate in well under a minute on two CPU cores (about 24 CPU-seconds) and to train on in
minutes. Files are written with PIL (JPEG quality 90, no EXIF; PNG without timestamps), so equal
arguments give byte-identical files, on any CPU: every pixel-affecting transcendental function
comes from portable_math (exact IEEE operations in a fixed order) and colour matrices are applied
as explicit sums, because numpy's SIMD exp/log/pow/... and BLAS differ in the last bits between
AVX-512, AVX2 and other machines, enough to flip pixels and so the dataset hash.
`difficulty="easy"` (the `synthderm-easy` dataset) keeps the plans but removes the mimics,
narrows the class ranges (see EASY_PULL) and lights every site neutrally (a colour cast is one
more nuisance a 300-image smoke model must learn past), for quick gates with tiny models. The dataset is
written into a hidden sibling folder and renamed into place at the end, so an interrupted
generation never leaves a partial dataset.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from scipy import ndimage
from tqdm import tqdm

from ..errors import BenchboxError
from ..labels import CLASSES, MALIGNANT_CLASSES
from . import portable_math as pm
from .ita import RGB_TO_XYZ, lab_to_linear_rgb

METADATA_FILE = "HAM10000_metadata.csv"
IMAGE_DIR = "HAM10000_images_part_1"
MASK_DIR = "HAM10000_segmentations_lesion_tschandl"
TRUTH_FILE = "synthderm_truth.csv"
INK_MASK_DIR = "synthderm_ink_masks"  # written only with artefact_masks=True
METADATA_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset")
JPEG_QUALITY = 90

CLASS_PRIOR = {"akiec": 0.0327, "bcc": 0.0513, "bkl": 0.1097, "df": 0.0115, "mel": 0.1111, "nv": 0.6695, "vasc": 0.0142}
CLASS_FLOOR = 0.04  # every class gets at least this share of lesions

ARTEFACTS = ("hair", "ruler", "ink")
ARTEFACT_RATE = {"hair": 0.35, "ruler": 0.12, "ink": 0.06}
INK_MASK_THRESHOLD = 0.25  # an ink mask pixel's colour is more than this share marker

# ITA categories (lower, upper bound in degrees) and the share of lesions drawn from each.
SKIN_TONES = (
    (55.0, 70.0, 0.22), (41.0, 55.0, 0.22), (28.0, 41.0, 0.18), (10.0, 28.0, 0.16), (-30.0, 10.0, 0.14), (-50.0, -30.0, 0.08),
)


@dataclass(frozen=True)
class Site:
    """An imaging set-up: the colour of its light, its saturation and its optics."""

    name: str
    light: tuple[float, float, float]  # linear RGB gains (a colour cast); scaled to luminance 1 when used
    saturation: float
    vignette: float  # darkening at the image corners
    field_stop: float  # radius of the dermoscope's circular field, in image half-widths
    blur: float  # optical blur, in pixels of a 128 px image
    noise: float  # sensor noise sd, linear RGB


# Lights modelled on HAM10000's sources as benchbox measures them (uncorrected skin ITA 82-95
# degrees on rosendahl and vidir_modern, bluish; 59 on vidir_molemax, reddish): a bluish light
# pushes b* down and the measured ITA up. Saturations stay within 5%, which moves ITA by < 1.5
# degrees, since a white balance can correct a light's colour but not a camera's saturation.
SITES = (
    Site("synth_polarised", (0.94, 1.0, 1.15), 1.03, 0.06, 1.0, 0.3, 0.004),
    Site("synth_modern", (0.84, 1.0, 1.40), 1.00, 0.08, 9.0, 0.2, 0.003),
    Site("synth_video", (1.12, 1.0, 0.85), 0.96, 0.18, 9.0, 0.9, 0.010),
    Site("synth_compact", (1.04, 1.0, 0.92), 0.98, 0.10, 1.12, 0.5, 0.006),
)
SITE_BY_NAME = {site.name: site for site in SITES}
# p(site | class): HAM10000's dataset x dx table (rosendahl, vidir_modern, vidir_molemax,
# vienna_dias) mixed half and half with a uniform table.
SITE_COUNTS = {
    "akiec": (295, 32, 0, 0), "bcc": (296, 211, 2, 5), "bkl": (490, 475, 124, 10), "df": (30, 51, 30, 4),
    "mel": (342, 680, 24, 67), "nv": (803, 1832, 3720, 350), "vasc": (3, 82, 54, 3),
}

# HAM10000's class-conditional metadata.
AGE_MEAN_SD = {
    "akiec": (66.5, 11.5), "bcc": (66.8, 13.7), "bkl": (64.3, 14.1), "df": (53.0, 13.6), "mel": (60.7, 15.2),
    "nv": (46.5, 15.2), "vasc": (51.4, 21.6),
}
MALE_SHARE = {"akiec": 0.676, "bcc": 0.617, "bkl": 0.575, "df": 0.548, "mel": 0.619, "nv": 0.514, "vasc": 0.486}
UNKNOWN_SHARE = 0.006  # missing age, 'unknown' sex
DX_TYPES = ("histo", "follow_up", "consensus", "confocal")
DX_TYPE_COUNTS = {
    "akiec": (327, 0, 0, 0), "bcc": (514, 0, 0, 0), "bkl": (766, 0, 264, 69), "df": (55, 0, 60, 0),
    "mel": (1113, 0, 0, 0), "nv": (2498, 3704, 503, 0), "vasc": (67, 0, 75, 0),
}
LOCALIZATIONS = (
    "abdomen", "acral", "back", "chest", "ear", "face", "foot", "genital", "hand", "lower extremity",
    "neck", "scalp", "trunk", "unknown", "upper extremity",
)
LOCALIZATION_COUNTS = {
    "akiec": (5, 0, 29, 12, 3, 113, 0, 0, 13, 65, 10, 14, 1, 0, 62),
    "bcc": (18, 0, 186, 47, 0, 101, 4, 0, 2, 58, 14, 19, 11, 5, 49),
    "bkl": (42, 0, 202, 74, 6, 319, 1, 2, 14, 174, 31, 34, 73, 23, 104),
    "df": (4, 0, 2, 0, 0, 0, 2, 1, 0, 82, 0, 0, 0, 0, 24),
    "mel": (66, 0, 324, 68, 17, 104, 28, 0, 1, 192, 29, 14, 47, 10, 213),
    "nv": (860, 7, 1427, 200, 30, 100, 284, 45, 55, 1479, 81, 45, 1241, 196, 655),
    "vasc": (27, 0, 22, 6, 0, 8, 0, 0, 5, 27, 3, 2, 31, 0, 11),
}
# Share of lesions with more than one image (HAM10000), and how many images those have.
MULTI_IMAGE_SHARE = {"akiec": 0.338, "bcc": 0.465, "bkl": 0.395, "df": 0.466, "mel": 0.625, "nv": 0.183, "vasc": 0.347}
EXTRA_IMAGES = ((1, 0.73), (2, 0.25), (3, 0.02))
RELABEL_SHARE = 0.10  # of multi-image lesions, one image under a new lesion_id

# Appearance ranges per class: (lo, hi) is always drawn uniformly; (p, lo, hi) is present with
# probability p, else 0. Radii and sizes are in lesion radii; densities in absorbance units.
LOOKS = {
    "nv": dict(
        radius=(0.28, 0.6), aspect=(0.75, 1.0), asymmetry=(0.0, 0.07), irregularity=(0.0, 0.025), fuzz=(0.12, 0.4),
        pseudopods=(0.1, 1, 3), brown=(0.4, 1.7), heterogeneity=(0.05, 0.3), centre_dark=(-0.2, 0.5),
        blotch=(0.2, 0.2, 0.8), blue=(0.0, 0.3), red=(0.0, 0.35), network=(0.65, 0.4, 0.9),
        network_atypia=(0.0, 0.35), brown_dots=(0.4, 0.4, 1.0), dot_periphery=(0.0, 0.4), veil=(0.08, 0.2, 0.6),
    ),
    "mel": dict(
        radius=(0.35, 0.72), aspect=(0.7, 1.0), asymmetry=(0.04, 0.16), irregularity=(0.015, 0.06), fuzz=(0.05, 0.3),
        pseudopods=(0.4, 1, 5), brown=(0.6, 1.9), heterogeneity=(0.2, 0.6), centre_dark=(-0.4, 0.3),
        blotch=(0.55, 0.4, 1.6), blue=(0.0, 0.5), red=(0.0, 0.45), network=(0.55, 0.4, 1.0),
        network_atypia=(0.45, 1.0), black_dots=(0.5, 0.4, 1.0), dot_periphery=(0.4, 1.0), veil=(0.4, 0.3, 1.0),
        regression=(0.3, 0.3, 0.9), vessels=(0.1, 0.3, 0.7), ulcer=(0.05, 0.5, 1.0),
    ),
    "bkl": dict(
        radius=(0.32, 0.68), aspect=(0.7, 1.0), asymmetry=(0.02, 0.12), irregularity=(0.01, 0.06), fuzz=(0.02, 0.15),
        brown=(0.4, 1.6), heterogeneity=(0.15, 0.45), centre_dark=(-0.3, 0.3), blotch=(0.3, 0.3, 1.0),
        blue=(0.0, 0.35), red=(0.0, 0.35), network=(0.2, 0.2, 0.6), network_atypia=(0.0, 0.6),
        fissures=(0.5, 0.4, 1.0), comedos=(0.45, 0.4, 1.0), milia=(0.5, 0.4, 1.0), regression=(0.2, 0.3, 0.8),
        scale=(0.25, 0.2, 0.6),
    ),
    "bcc": dict(
        radius=(0.3, 0.62), aspect=(0.7, 1.0), asymmetry=(0.03, 0.14), irregularity=(0.01, 0.05), fuzz=(0.05, 0.3),
        brown=(0.0, 0.9), heterogeneity=(0.1, 0.45), centre_dark=(-0.3, 0.3), blue=(0.05, 0.5), red=(0.15, 0.7),
        blue_nests=(0.65, 0.4, 1.0), vessels=(0.75, 0.4, 1.0), ulcer=(0.25, 0.5, 1.0), scar=(0.1, 0.3, 0.6),
        veil=(0.1, 0.2, 0.5),
    ),
    "akiec": dict(
        radius=(0.3, 0.68), aspect=(0.7, 1.0), asymmetry=(0.03, 0.14), irregularity=(0.01, 0.06), fuzz=(0.15, 0.45),
        brown=(0.0, 0.9), heterogeneity=(0.1, 0.45), centre_dark=(-0.3, 0.3), blue=(0.0, 0.3), red=(0.3, 0.9),
        red_dots=(0.6, 0.4, 1.0), scale=(0.7, 0.2, 0.8), vessels=(0.15, 0.3, 0.6), ulcer=(0.1, 0.4, 0.8),
        blotch=(0.2, 0.2, 0.8),
    ),
    "df": dict(
        radius=(0.25, 0.55), aspect=(0.75, 1.0), asymmetry=(0.0, 0.07), irregularity=(0.0, 0.025), fuzz=(0.15, 0.5),
        brown=(0.3, 1.3), heterogeneity=(0.05, 0.3), centre_dark=(-0.5, 0.2), blue=(0.0, 0.2), red=(0.1, 0.5),
        network=(0.7, 0.3, 0.8), network_atypia=(0.0, 0.3), scar=(0.75, 0.2, 0.9),
    ),
    "vasc": dict(
        radius=(0.25, 0.55), aspect=(0.75, 1.0), asymmetry=(0.02, 0.1), irregularity=(0.0, 0.03), fuzz=(0.02, 0.2),
        brown=(0.0, 0.6), heterogeneity=(0.1, 0.35), centre_dark=(-0.2, 0.2), blue=(0.05, 0.6), red=(0.5, 1.5),
        lacunae=(0.85, 0.4, 1.0),
    ),
}
# Every lesion's melanin is a little redder or greyer: the melanin absorbance of green and blue
# is scaled by (1 + tint) and (1 + 2 tint).
MELANIN_TINT = (-0.15, 0.15)
APPEARANCE_PARAMS = tuple(sorted({name for look in LOOKS.values() for name in look}))
MIMIC_SHARE = {"akiec": 0.3, "bcc": 0.3, "bkl": 0.3, "df": 0.3, "mel": 0.3, "nv": 0.2, "vasc": 0.3}
CONFUSABLE = {
    "akiec": ("bkl", "bcc"), "bcc": ("nv", "akiec", "mel"), "bkl": ("mel", "nv"), "df": ("nv", "bkl"),
    "mel": ("nv", "bkl"), "nv": ("mel", "bkl", "df"), "vasc": ("bcc", "mel"),
}
MIMIC_PARAM_SHARE = 0.8

# difficulty="easy", for quick regression checks with tiny models: no mimics, every appearance
# range shrunk by EASY_PULL toward its centre and every presence probability moved by EASY_PULL
# toward 0 or 1 (whichever is nearer), melanin tint scaled by 1 - EASY_PULL, full lesion
# contrast on every skin tone, and neutral site lights.
DIFFICULTIES = ("default", "easy")
EASY_PULL = 0.75


def _easy_range(spec: tuple) -> tuple:
    if len(spec) == 3:
        presence = spec[0]
        return (presence + EASY_PULL * (float(presence >= 0.5) - presence), *_easy_range(spec[1:]))
    centre, half_width = (spec[0] + spec[1]) / 2, (spec[1] - spec[0]) / 2 * (1 - EASY_PULL)
    return (centre - half_width, centre + half_width)


EASY_LOOKS = {dx: {name: _easy_range(spec) for name, spec in look.items()} for dx, look in LOOKS.items()}

# Absorbance per unit density in linear R, G, B.
ABSORB_MELANIN = np.array([0.72, 0.98, 1.25])
ABSORB_DERMAL = np.array([1.25, 0.95, 0.55])
ABSORB_BLOOD = np.array([0.12, 1.15, 0.75])
WHITE = np.array([0.80, 0.76, 0.70])
HAIR = np.array([0.025, 0.018, 0.012])
INK = np.array([0.22, 0.02, 0.50])  # gentian violet
RULER = np.array([0.82, 0.82, 0.80])


@dataclass(frozen=True)
class View:
    """One image of a lesion: its pose, exposure, artefacts and ids."""

    number: int
    rotation: float  # radians
    scale: float
    offset: tuple[float, float]  # lesion centre, in image half-widths
    ita: float  # planted skin ITA of this image, degrees
    hair: bool
    ruler: bool
    ink: bool
    relabelled: bool = False
    image_id: str = ""
    lesion_id: str = ""
    # (hair, ruler, ink) at the class-independent ARTEFACT_RATE, from the same draws; None: as
    # above. Their shapes come first from the render stream whatever artefact_correlation says.
    base_artefacts: tuple[bool, bool, bool] | None = None


@dataclass(frozen=True)
class LesionPlan:
    """Everything about a lesion except its appearance: class, metadata, skin, images."""

    index: int
    dx: str
    looks_like: str
    age: float
    sex: str
    localization: str
    dx_type: str
    site: str
    skin_a: float
    skin_b: float
    views: tuple[View, ...]
    difficulty: str = "default"
    lesion_contrast: float = 0.5  # lesion pigment scale at ITA <= -40 (see contrast_factor)
    contrast_step_ita: float | None = None  # set: the scale is a step at this ITA, not a ramp
    ink_width: float = 1.0  # the ink marker's stroke width, times the default

    @property
    def lesion_id(self) -> str:
        return f"SYNL_{self.index + 1:07d}"


# ---------------------------------------------------------------------------------------------
# Public entry point


def generate(
    out_dir: Path,
    n_lesions: int = 1500,
    size: int = 128,
    seed: int = 0,
    artefact_correlation: dict | float | None = None,
    workers: int | None = None,
    difficulty: str = "default",
    lesion_contrast: str | float | None = None,
    artefact_masks: bool = False,
    contrast_step_ita: float | None = None,
    ink_width: float = 1.0,
) -> Path:
    """Write a synthderm dataset to `out_dir` (which must not exist or be empty) and return it.

    `artefact_correlation` plants a class association of hair, ruler and ink. None (default): none.
    A float s in [0, 1]: each artefact is present with probability base + s * (1 - base) on
    malignant (mel, bcc, akiec) images and base * (1 - s) on benign ones (1.0: exactly the
    malignant images carry all three). A dict {artefact: {class: probability}}: those
    probabilities replace the base rate for the classes named. Datasets that differ only in
    `artefact_correlation` are counterfactual pairs: the same images, lesions, metadata, poses,
    lesion masks, skin and sensor noise; only artefacts differ, each drawn with the same shape
    wherever both versions have it (the base-rate artefacts first from the render stream, any
    other from its own), and an image whose hair/ruler/ink flags agree is byte-identical.
    `workers` processes render the lesions (default: one per CPU); the files do not depend on it.
    `difficulty="easy"` makes the class signal clearly stronger for small, quick models (see
    EASY_PULL); the plans (classes, metadata, sites, skin tones, images per lesion, poses,
    artefacts) are those of the default dataset with the same arguments.

    `lesion_contrast` plants (or removes) the skin-tone gap: lesion pigment is scaled by
    `contrast_factor(ita, floor)`, a ramp from `floor` at ITA <= -40 to 1 at ITA >= 50 degrees.
    "graded" is floor 0.5, "equal" floor 1 (the same contrast on every skin), a float in (0, 1]
    that floor (lower: a stronger gap); None (default): graded, or equal with difficulty="easy".
    `contrast_step_ita` replaces the ramp by a step: the floor on every skin with ITA at or below
    it, full contrast above (at 28, the light/dark cut of the subgroup boards, the whole planted
    gap lies between the two groups those boards compare).
    `artefact_masks=True` also writes INK_MASK_DIR/<image_id>_ink.png for every image whose truth
    says ink (and for no other): 255 where the marker makes up more than INK_MASK_THRESHOLD of
    the pixel's colour before the site's optics, else 0.
    `ink_width` multiplies the marker's stroke width (1.5-3 px at 128 px by default): a bolder
    marker makes a shortcut that small models at small inputs can see (benchbox validate).
    """
    out_dir = Path(out_dir)
    if n_lesions < len(CLASSES):
        raise BenchboxError(f"synthderm: n_lesions={n_lesions} is too small; use at least {len(CLASSES)} (one per class).")
    if size < 32:
        raise BenchboxError(f"synthderm: size={size} px is too small; use at least 32.")
    if difficulty not in DIFFICULTIES:
        raise BenchboxError(f"synthderm: difficulty={difficulty!r}; use one of {list(DIFFICULTIES)}.")
    if not isinstance(artefact_masks, bool):
        raise BenchboxError(f"synthderm: artefact_masks={artefact_masks!r}; use True or False.")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise BenchboxError(f"synthderm: {out_dir} already exists and is not empty; remove it or choose another --out.")
    artefact_prob = artefact_probabilities(artefact_correlation)
    if contrast_step_ita is not None and (isinstance(contrast_step_ita, bool) or not isinstance(contrast_step_ita, (int, float))):
        raise BenchboxError(f"synthderm: contrast_step_ita={contrast_step_ita!r}; use an ITA in degrees or None.")
    if isinstance(ink_width, bool) or not isinstance(ink_width, (int, float)) or not 0 < ink_width <= 8:
        raise BenchboxError(f"synthderm: ink_width={ink_width!r}; use a multiple of the default stroke in (0, 8].")
    plans = [replace(plan, ink_width=float(ink_width))
             for plan in plan_dataset(n_lesions, seed, artefact_prob, difficulty, lesion_contrast, contrast_step_ita)]

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        (partial / IMAGE_DIR).mkdir()
        (partial / MASK_DIR).mkdir()
        if artefact_masks:
            (partial / INK_MASK_DIR).mkdir()
        jobs = [(plan, seed, size, str(partial), artefact_masks) for plan in plans]
        with contextlib.ExitStack() as stack:
            mapper = map
            if (workers or os.cpu_count() or 1) > 1:
                pool = stack.enter_context(ProcessPoolExecutor(workers or os.cpu_count()))
                mapper = functools.partial(pool.map, chunksize=16)
            for _ in tqdm(mapper(_render_lesion_files, jobs), total=len(jobs), desc="synthderm", unit="lesion"):
                pass
        metadata, truth = _tables(plans)
        metadata.to_csv(partial / METADATA_FILE, index=False, lineterminator="\n")
        truth.to_csv(partial / TRUTH_FILE, index=False, lineterminator="\n", float_format="%.3f")
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out_dir


def ink_mask_path(root: Path, image_id: str) -> Path:
    """Where artefact_masks=True writes an image's ink mask (absent for an image without ink)."""
    return Path(root) / INK_MASK_DIR / f"{image_id}_ink.png"


LESION_CONTRASTS = {"graded": 0.5, "equal": 1.0}


def contrast_floor(lesion_contrast: str | float | None, difficulty: str = "default") -> float:
    """The lesion-contrast floor (contrast at ITA <= -40) of `generate`'s parameter."""
    if lesion_contrast is None:
        return LESION_CONTRASTS["equal" if difficulty == "easy" else "graded"]
    if isinstance(lesion_contrast, str):
        if lesion_contrast not in LESION_CONTRASTS:
            raise BenchboxError(
                f"synthderm: lesion_contrast={lesion_contrast!r}; use {list(LESION_CONTRASTS)} or a number in (0, 1]."
            )
        return LESION_CONTRASTS[lesion_contrast]
    if isinstance(lesion_contrast, bool) or not isinstance(lesion_contrast, (int, float)) or not 0 < lesion_contrast <= 1:
        raise BenchboxError(
            f"synthderm: lesion_contrast={lesion_contrast!r}; use {list(LESION_CONTRASTS)} or a number in (0, 1]."
        )
    return float(lesion_contrast)


def contrast_factor(ita: float, floor: float, step_ita: float | None = None) -> float:
    """The scale of a lesion's pigment on skin of this ITA: `floor` at ITA <= -40, rising linearly
    to 1 at ITA >= 50 (lower contrast on darker skin; floor 1: equal on every skin). With
    `step_ita`: `floor` at ITA <= step_ita, 1 above."""
    if floor == 1.0:
        return 1.0
    if step_ita is not None:
        return floor if ita <= step_ita else 1.0
    return float(np.clip(floor + (1.0 - floor) * (ita + 40.0) / 90.0, floor, 1.0))


def artefact_probabilities(correlation: dict | float | None) -> np.ndarray:
    """Per-class artefact probabilities, CLASSES x ARTEFACTS, from `generate`'s parameter."""
    base = np.array([[ARTEFACT_RATE[a] for a in ARTEFACTS]] * len(CLASSES))
    if correlation is None:
        return base
    if isinstance(correlation, (int, float)):
        s = float(correlation)
        if not 0.0 <= s <= 1.0:
            raise BenchboxError(f"synthderm: artefact_correlation={s} must lie in [0, 1].")
        malignant = np.isin(CLASSES, MALIGNANT_CLASSES)[:, None]
        return np.where(malignant, base + s * (1 - base), base * (1 - s))
    probs = base.copy()
    for artefact, by_class in correlation.items():
        if artefact not in ARTEFACTS:
            raise BenchboxError(f"synthderm: artefact_correlation names {artefact!r}; artefacts are {list(ARTEFACTS)}.")
        for dx, p in by_class.items():
            if dx not in CLASSES or not 0.0 <= float(p) <= 1.0:
                raise BenchboxError(
                    f"synthderm: artefact_correlation[{artefact!r}] has {dx!r}: {p!r}; "
                    f"keys must be classes {list(CLASSES)} and values probabilities in [0, 1]."
                )
            probs[CLASSES.index(dx), ARTEFACTS.index(artefact)] = float(p)
    return probs


def class_counts(n_lesions: int) -> dict[str, int]:
    """Lesions per class: HAM10000's priors with a CLASS_FLOOR share per class, nv takes the rest."""
    floor = math.ceil(CLASS_FLOOR * n_lesions)
    counts = {dx: max(floor, round(CLASS_PRIOR[dx] * n_lesions)) for dx in CLASSES if dx != "nv"}
    counts["nv"] = n_lesions - sum(counts.values())
    return {dx: counts[dx] for dx in CLASSES}


# ---------------------------------------------------------------------------------------------
# Planning: classes, metadata, images and ids (cheap; done before any rendering)


def plan_dataset(
    n_lesions: int, seed: int, artefact_prob: np.ndarray, difficulty: str = "default",
    lesion_contrast: str | float | None = None, contrast_step_ita: float | None = None,
) -> list[LesionPlan]:
    """Plans for every lesion, with lesion and image ids assigned."""
    rng = np.random.default_rng(seed)
    counts = class_counts(n_lesions)
    classes = rng.permutation(np.repeat(CLASSES, [counts[dx] for dx in CLASSES]))
    floor = contrast_floor(lesion_contrast, difficulty)
    plans = [replace(_plan_lesion(seed, i, str(dx), artefact_prob, difficulty, floor), contrast_step_ita=contrast_step_ita)
             for i, dx in enumerate(classes)]

    n_images = sum(len(p.views) for p in plans)
    image_numbers = iter(rng.permutation(n_images) + 1)
    next_lesion = n_lesions + 1
    with_ids = []
    for plan in plans:
        views = []
        for view in plan.views:
            lesion_id = plan.lesion_id
            if view.relabelled:
                lesion_id, next_lesion = f"SYNL_{next_lesion:07d}", next_lesion + 1
            views.append(replace(view, image_id=f"SYN_{next(image_numbers):07d}", lesion_id=lesion_id))
        with_ids.append(replace(plan, views=tuple(views)))
    return with_ids


def _plan_lesion(
    seed: int, index: int, dx: str, artefact_prob: np.ndarray, difficulty: str = "default", floor: float | None = None
) -> LesionPlan:
    rng = np.random.default_rng((seed, index, 0))
    k = CLASSES.index(dx)
    looks_like = dx
    if rng.random() < MIMIC_SHARE[dx]:
        mimicked = str(rng.choice(CONFUSABLE[dx]))  # drawn in easy too, so the later draws match default's
        if difficulty == "default":
            looks_like = mimicked

    mean, sd = AGE_MEAN_SD[dx]
    age = float(np.clip(5 * round(rng.normal(mean, sd) / 5), 0, 85))
    if rng.random() < UNKNOWN_SHARE:
        age = float("nan")
    sex = "male" if rng.random() < MALE_SHARE[dx] else "female"
    if rng.random() < UNKNOWN_SHARE:
        sex = "unknown"
    localization = str(rng.choice(LOCALIZATIONS, p=_normalise(LOCALIZATION_COUNTS[dx])))
    dx_type = str(rng.choice(DX_TYPES, p=_normalise(DX_TYPE_COUNTS[dx])))
    site_p = 0.5 * _normalise(SITE_COUNTS[dx]) + 0.5 / len(SITES)
    site = SITES[rng.choice(len(SITES), p=site_p)].name

    low, high, _ = SKIN_TONES[rng.choice(len(SKIN_TONES), p=_normalise([t[2] for t in SKIN_TONES]))]
    ita = rng.uniform(low, high)
    skin_a, skin_b = rng.uniform(7.0, 14.0), rng.uniform(13.0, 20.0)

    n_views = 1
    if rng.random() < MULTI_IMAGE_SHARE[dx]:
        extra, share = zip(*EXTRA_IMAGES)
        n_views += int(rng.choice(extra, p=share))
    relabel = n_views > 1 and rng.random() < RELABEL_SHARE
    views = []
    base_prob = np.array([ARTEFACT_RATE[a] for a in ARTEFACTS])
    for number in range(n_views):
        draws = rng.random(len(ARTEFACTS))
        present, base = draws < artefact_prob[k], draws < base_prob
        views.append(
            View(
                number=number,
                rotation=rng.uniform(0, 2 * np.pi),
                scale=rng.uniform(0.85, 1.18) if number else 1.0,
                offset=tuple(rng.normal(0, 0.05, 2)),
                ita=ita + (rng.normal(0, 1.5) if number else 0.0),
                hair=bool(present[0]),
                ruler=bool(present[1]),
                ink=bool(present[2]),
                relabelled=relabel and number == n_views - 1,
                base_artefacts=(bool(base[0]), bool(base[1]), bool(base[2])),
            )
        )
    floor = contrast_floor(None, difficulty) if floor is None else floor
    return LesionPlan(
        index, dx, looks_like, age, sex, localization, dx_type, site, skin_a, skin_b, tuple(views), difficulty, floor
    )


def _normalise(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def _tables(plans: list[LesionPlan]) -> tuple[pd.DataFrame, pd.DataFrame]:
    meta, truth = [], []
    for plan in plans:
        for view in plan.views:
            meta.append(
                {
                    "lesion_id": view.lesion_id,
                    "image_id": view.image_id,
                    "dx": plan.dx,
                    "dx_type": plan.dx_type,
                    "age": plan.age,
                    "sex": plan.sex,
                    "localization": plan.localization,
                    "dataset": plan.site,
                }
            )
            truth.append(
                {
                    "image_id": view.image_id,
                    "lesion_id": view.lesion_id,
                    "true_lesion_id": plan.lesion_id,
                    "relabelled": view.relabelled,
                    "dx": plan.dx,
                    "looks_like": plan.looks_like,
                    "site": plan.site,
                    "ita": view.ita,
                    "hair": view.hair,
                    "ruler": view.ruler,
                    "ink": view.ink,
                    "view": view.number,
                    "rotation_deg": pm.degrees(view.rotation),
                    "scale": view.scale,
                }
            )
    metadata = pd.DataFrame(meta, columns=list(METADATA_COLUMNS)).sort_values(["lesion_id", "image_id"])
    metadata["age"] = metadata["age"].astype("Int64")
    truth = pd.DataFrame(truth).sort_values("image_id")
    return metadata.reset_index(drop=True), truth.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Appearance: a lesion's look in its own coordinates (radius 1), shared by all its images


@dataclass(frozen=True)
class Appearance:
    params: dict[str, float]
    border: np.ndarray  # r(theta) at BORDER_SAMPLES angles
    fields: np.ndarray  # (FIELDS, FIELD_GRID, FIELD_GRID) unit-variance noise fields, see FIELD_SCALES
    blotch_centre: tuple[float, float]
    dots: dict[str, np.ndarray]  # kind -> (n, 6): u, v, radius, elongation, angle, tone
    vessels: np.ndarray  # (n, 5): u0, v0, u1, v1, width


BORDER_SAMPLES = 720
BORDER_ANGLES = np.linspace(0, 2 * np.pi, BORDER_SAMPLES, endpoint=False)
FIELD_GRID = 80  # noise fields cover [-FIELD_EXTENT, FIELD_EXTENT]^2 lesion radii
FIELD_EXTENT = 1.8
# Noise fields: (smoothing sigma, band-pass sigma or 0) in grid cells. 0-4: broad colour
# variation, veil/regression/ulcer regions; 5: network cells; 6: fissure labyrinth;
# 7: flakes and peppering; 8: fine granularity.
FIELD_SCALES = ((5.0, 0), (5.0, 0), (5.0, 0), (5.0, 0), (5.0, 0), (1.3, 2.6), (1.6, 3.5), (1.0, 0), (0.7, 0))
DOT_KINDS = {  # kind: (count at strength 1, radius range, elongation range)
    "brown_dots": (28, (0.045, 0.08), (1.0, 1.3)),
    "black_dots": (22, (0.025, 0.09), (1.0, 1.6)),
    "blue_nests": (7, (0.08, 0.2), (1.3, 2.2)),
    "red_dots": (55, (0.02, 0.035), (1.0, 1.2)),
    "milia": (10, (0.03, 0.06), (1.0, 1.2)),
    "comedos": (10, (0.03, 0.06), (1.0, 1.4)),
    "lacunae": (30, (0.1, 0.22), (1.0, 1.3)),
}


def lesion_appearance(seed: int, plan: LesionPlan) -> Appearance:
    """Draw a lesion's look from its class's ranges (mimicking `looks_like` where it differs)."""
    rng = np.random.default_rng((seed, plan.index, 1))
    easy = plan.difficulty == "easy"
    looks = EASY_LOOKS if easy else LOOKS
    params = {}
    for name in APPEARANCE_PARAMS:
        source = plan.looks_like if rng.random() < MIMIC_PARAM_SHARE else plan.dx
        spec = looks[source].get(name)
        presence, value = rng.random(), rng.random()
        if spec is None:
            params[name] = 0.0
        elif len(spec) == 2:
            params[name] = spec[0] + value * (spec[1] - spec[0])
        else:
            params[name] = spec[1] + value * (spec[2] - spec[1]) if presence < spec[0] else 0.0
    params["melanin_tint"] = rng.uniform(*MELANIN_TINT)
    if easy:
        params["melanin_tint"] *= 1 - EASY_PULL

    theta = BORDER_ANGLES
    border = np.ones_like(theta)
    for k in range(2, 14):
        amplitude = params["asymmetry"] if k <= 3 else params["irregularity"] * 4 / k
        border += amplitude * rng.uniform(0.4, 1.0) * pm.cos(k * theta + rng.uniform(0, 2 * np.pi))
    for _ in range(round(params["pseudopods"])):
        centre, width = rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.12)
        distance = pm.wrap(theta - centre)
        border += rng.uniform(0.1, 0.25) * pm.exp(-0.5 * (distance / width) ** 2)

    fields = _noise_fields(rng)
    angle, distance = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.6)

    dots = {}
    for kind, (count, radius, elongation) in DOT_KINDS.items():
        n = round(count * params.get(kind, 0.0) * rng.uniform(0.6, 1.0))
        if n == 0:
            continue
        periphery = params["dot_periphery"] if kind in ("brown_dots", "black_dots") else 0.0
        reach = 0.9 if kind != "lacunae" else 0.82
        r = np.where(rng.random(n) < periphery, rng.uniform(0.6, reach, n), reach * np.sqrt(rng.random(n)))
        phi = rng.uniform(0, 2 * np.pi, n)
        rb = r * np.interp(phi, theta, border, period=2 * np.pi)
        dots[kind] = np.stack(
            [
                rb * pm.cos(phi),
                rb * pm.sin(phi) * params["aspect"],
                rng.uniform(*radius, n),
                rng.uniform(*elongation, n),
                rng.uniform(0, np.pi, n),
                rng.uniform(0.5, 1.0, n),
            ],
            axis=1,
        )
    vessels = _vessel_tree(rng, params["vessels"]) if params["vessels"] > 0 else np.zeros((0, 5))
    return Appearance(params, border, fields, (distance * pm.cos(angle), distance * pm.sin(angle)), dots, vessels)


def _noise_fields(rng: np.random.Generator) -> np.ndarray:
    """Periodic Gaussian (or difference-of-Gaussian) filtered white noise, one field per FIELD_SCALES row."""
    spectrum = np.fft.rfft2(rng.standard_normal((len(FIELD_SCALES), FIELD_GRID, FIELD_GRID)))
    k2 = (2 * np.pi) * (2 * np.pi) * (np.fft.fftfreq(FIELD_GRID)[:, None] ** 2 + np.fft.rfftfreq(FIELD_GRID)[None, :] ** 2)
    sigma, band = np.array(FIELD_SCALES).T[:, :, None, None]
    transfer = pm.exp(-0.5 * k2 * sigma**2) - np.where(band > 0, pm.exp(-0.5 * k2 * band**2), 0.0)
    fields = np.fft.irfft2(spectrum * transfer, s=(FIELD_GRID, FIELD_GRID))
    fields -= fields.mean(axis=(1, 2), keepdims=True)
    return fields / fields.std(axis=(1, 2), keepdims=True)


def _vessel_tree(rng: np.random.Generator, strength: float) -> np.ndarray:
    """Arborising vessels: a few trunks that branch twice, as line segments in lesion coordinates."""
    segments = []
    for _ in range(1 + round(3 * strength)):
        stack = [(rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(0, 2 * np.pi), 0.05, 0)]
        while stack:
            u, v, angle, width, depth = stack.pop()
            length = rng.uniform(0.12, 0.3) / (1 + 0.4 * depth)
            for _ in range(3):  # a slightly winding branch
                angle += rng.normal(0, 0.35)
                u1, v1 = u + length / 3 * pm.cos(angle), v + length / 3 * pm.sin(angle)
                segments.append((u, v, u1, v1, width))
                u, v = u1, v1
            if depth < 2:
                for turn in (-1, 1):
                    stack.append((u, v, angle + turn * rng.uniform(0.3, 0.9), width * 0.65, depth + 1))
    return np.array(segments)


# ---------------------------------------------------------------------------------------------
# Rendering one image


def render(seed: int, plan: LesionPlan, look: Appearance, view: View, size: int, ink_cover: bool = False):
    """The uint8 RGB image (size x size x 3) and exact boolean mask of one view of a lesion; with
    `ink_cover`, also the share of each pixel's colour that is ink marker (before the site's optics)."""
    rng = np.random.default_rng((seed, plan.index, 2 + view.number))
    site = SITE_BY_NAME[plan.site]
    p = look.params
    radius = p["radius"] * view.scale  # lesion radius, in image half-widths
    half = size / 2

    # Pixel centres in image half-widths, then in lesion coordinates (v stretched by the aspect).
    x, y, r_image = _image_grid(size)
    cos, sin = pm.cos(view.rotation), pm.sin(view.rotation)
    u = (cos * (x - view.offset[0]) + sin * (y - view.offset[1])) / radius
    v = (-sin * (x - view.offset[0]) + cos * (y - view.offset[1])) / (radius * p["aspect"])
    rho = pm.hypot(u, v)
    border = np.interp(pm.arctan2(v, u), BORDER_ANGLES, look.border, period=2 * np.pi)
    mask = rho < border
    to_pixels = _lesion_to_pixels(view, radius, half)

    # Skin with mean-free texture: slow mottling and the fine furrow labyrinth of the skin surface.
    noise = rng.standard_normal((2, size, size), dtype=np.float32)
    mottle = ndimage.gaussian_filter(noise[0], size / 24, mode="wrap", truncate=2.5)
    furrows = ndimage.gaussian_filter(noise[1], 1.1 * size / 128, mode="wrap")
    furrows = pm.exp(-((furrows / furrows.std() / 0.25) ** 2)).astype(np.float32)
    texture = 0.03 * mottle / mottle.std() - 0.05 * (furrows - furrows.mean())
    skin = lab_to_linear_rgb(skin_lab(view.ita, plan.skin_a, plan.skin_b)).astype(np.float32)
    linear = pm.exp(texture).astype(np.float32)[..., None] * skin

    # The lesion: absorption by its pigment maps, then white, on its pixels only.
    if mask.any():
        canvases = _draw_structures(look, to_pixels, radius * half, size)
        contrast = contrast_factor(view.ita, plan.lesion_contrast, plan.contrast_step_ita)
        edge = max(p["fuzz"], 1.5 / (radius * half))  # at least 1.5 px
        alpha = contrast * np.sqrt(_smoothstep(0.0, edge, (border - rho)[mask]))  # visible close to the mask edge
        r_norm = (rho / border)[mask]
        structures = {kind: canvas[mask] for kind, canvas in canvases.items()}
        brown, blue, red, white = _pigment_maps(look, u[mask], v[mask] * p["aspect"], r_norm, structures)
        melanin = ABSORB_MELANIN * (1 + p["melanin_tint"] * np.array([0.0, 1.0, 2.0]))
        absorbance = (
            np.clip(brown, 0, None)[:, None] * melanin
            + np.clip(blue, 0, None)[:, None] * ABSORB_DERMAL
            + np.clip(red, 0, None)[:, None] * ABSORB_BLOOD
        )
        lesion = linear[mask] * pm.exp(-alpha[:, None] * absorbance)
        white = np.clip(alpha * white, 0, 0.9)[:, None]
        linear[mask] = lesion + white * (WHITE - lesion)

    # Artefacts; one beyond the view's base-rate ones is drawn from a stream of its own.
    def own_stream(artefact: int) -> np.random.Generator:
        return np.random.default_rng((seed, plan.index, 2 + view.number, 1 + artefact))

    linear, ink = _draw_artefacts(rng, own_stream, linear, view, size, radius, plan.ink_width)

    # The site: its light, saturation, vignetting and field stop, blur, sensor noise.
    linear = _site_colour(linear, site, neutral=plan.difficulty == "easy") * _site_light(site, size)[..., None]
    if site.blur > 0:
        linear = ndimage.gaussian_filter(linear, (site.blur * size / 128, site.blur * size / 128, 0))
    linear += site.noise * rng.standard_normal(linear.shape, dtype=np.float32)
    if ink_cover:
        return _to_srgb8(linear), mask, ink
    return _to_srgb8(linear), mask


@functools.lru_cache(maxsize=4)
def _image_grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel-centre coordinates x, y in image half-widths (centre 0) and their radius."""
    grid = ((np.arange(size) + 0.5) / (size / 2) - 1.0).astype(np.float32)
    y, x = np.meshgrid(grid, grid, indexing="ij")
    return x, y, pm.hypot(x, y).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _site_light(site: Site, size: int) -> np.ndarray:
    """Vignetting times the dermoscope's circular field stop."""
    r = _image_grid(size)[2]
    r2 = (r / np.sqrt(2)) ** 2
    falloff = 1 - site.vignette * (r2 * r2)
    return (falloff * _smoothstep(site.field_stop, site.field_stop - 4 / size, r)).astype(np.float32)


def _pigment_maps(look: Appearance, u: np.ndarray, v: np.ndarray, r_norm: np.ndarray, canvases: dict[str, np.ndarray]):
    """Densities of melanin (brown), dermal melanin (blue), blood (red) and white, per lesion pixel."""
    p = look.params
    n = _sample_fields(look.fields, u, v)
    brown = p["brown"] * np.clip(1 + p["heterogeneity"] * n[0], 0.2, None) * (1 + p["centre_dark"] * (1 - 2 * r_norm))
    brown *= pm.exp(0.12 * n[8])  # fine granularity
    bu, bv = look.blotch_centre
    brown += p["blotch"] * pm.exp(-((u - bu) ** 2 + (v - bv) ** 2) / 0.18) * np.clip(1 + 0.5 * n[1], 0, None)
    blue = p["blue"] * np.clip(1 + 0.6 * n[1], 0, None)
    red = p["red"] * np.clip(1 + 0.3 * n[2], 0, None)
    white = np.zeros_like(u)

    if p["network"] > 0:  # pigment on the rims of irregular cells; atypical: uneven, broken
        atypia = p["network_atypia"]
        threshold = 0.2 + 0.8 * atypia * n[4]
        holes = _smoothstep(threshold - 0.5, threshold + 0.5, n[5])
        extent = _smoothstep(1.0, 0.5, r_norm) if atypia < 0.5 else (n[3] > -0.7).astype(float)
        if p["scar"] > 0:  # dermatofibroma: a delicate ring of network around the scar
            extent = extent * _smoothstep(0.35, 0.65, r_norm)
        brown *= 1 + p["network"] * extent * (0.6 - 1.2 * holes)
    if p["fissures"] > 0:  # cerebriform furrows and ridges
        furrows = pm.exp(-((n[6] / 0.6) ** 2))
        brown *= 1 + p["fissures"] * (1.1 * furrows - 0.5)
    if p["veil"] > 0:
        veil = p["veil"] * _smoothstep(0.0, 0.6, n[3] + 0.3)
        blue += 1.3 * veil
        white += 0.3 * veil
    if p["regression"] > 0:  # white scar-like area with grey peppering
        region = p["regression"] * _smoothstep(0.2, 0.8, n[4])
        white += 0.45 * region
        blue += 1.2 * region * (n[7] > 1.0)
        brown *= 1 - 0.6 * region
    if p["scar"] > 0:
        scar = p["scar"] * _smoothstep(0.55, 0.3, r_norm + 0.12 * n[2])
        white += 0.75 * scar
        brown *= 1 - 0.8 * scar
    if p["scale"] > 0:
        white += p["scale"] * 0.55 * _smoothstep(0.7, 1.5, n[7])
    if p["ulcer"] > 0:
        ulcer = p["ulcer"] * _smoothstep(1.0, 1.5, n[4])
        red += 1.5 * ulcer
        brown += 1.2 * ulcer

    # structure: (map, amount) per canvas
    for kind, effects in STRUCTURE_EFFECTS.items():
        if kind in canvases:
            for name, amount in effects:
                {"brown": brown, "blue": blue, "red": red, "white": white}[name] += amount * canvases[kind]
    if "lacunae" in canvases:  # pale septa between the lacunae
        white += 0.3 * p["lacunae"] * (1 - np.clip(1.5 * canvases["lacunae"], 0, 1)) * _smoothstep(0.95, 0.6, r_norm)
    if "vessels" in canvases:
        red += 2.4 * p["vessels"] * canvases["vessels"]
    return brown, blue, red, white


# What each rasterised structure adds to the pigment maps.
STRUCTURE_EFFECTS = {
    "brown_dots": (("brown", 1.4),),
    "black_dots": (("brown", 3.0), ("blue", 0.4)),
    "comedos": (("brown", 2.2),),
    "blue_nests": (("blue", 1.4), ("brown", 0.3)),
    "red_dots": (("red", 1.6),),
    "milia": (("white", 0.6),),
    "lacunae": (("red", 2.2),),
    "lacunae_dark": (("blue", 1.0),),
}


def _smoothstep(edge0: float, edge1, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _sample_fields(fields: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear samples of every noise field at lesion coordinates (u, v): (FIELDS, n)."""
    scale = (FIELD_GRID - 1) / (2 * FIELD_EXTENT)
    col = np.clip((u + FIELD_EXTENT) * scale, 0, FIELD_GRID - 1.001)
    row = np.clip((v + FIELD_EXTENT) * scale, 0, FIELD_GRID - 1.001)
    c0, r0 = col.astype(int), row.astype(int)
    fc, fr = col - c0, row - r0
    return (
        fields[:, r0, c0] * ((1 - fr) * (1 - fc))
        + fields[:, r0, c0 + 1] * ((1 - fr) * fc)
        + fields[:, r0 + 1, c0] * (fr * (1 - fc))
        + fields[:, r0 + 1, c0 + 1] * (fr * fc)
    )


def _lesion_to_pixels(view: View, radius: float, half: float):
    """Map lesion coordinates (u, v) to pixel coordinates (column, row)."""
    cos, sin = pm.cos(view.rotation), pm.sin(view.rotation)

    def to_pixels(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = view.offset[0] + radius * (cos * u - sin * v)
        y = view.offset[1] + radius * (sin * u + cos * v)
        return (x + 1) * half, (y + 1) * half

    return to_pixels


SUPERSAMPLE = 2  # shapes are drawn at twice the resolution and averaged down (anti-aliasing)


def _canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    return image, ImageDraw.Draw(image)


def _canvas_array(image: Image.Image, size: int, blur: float = 0.0) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32).reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3)) / 255
    return ndimage.gaussian_filter(array, blur) if blur > 0 else array


def _draw_structures(look: Appearance, to_pixels, radius_px: float, size: int) -> dict[str, np.ndarray]:
    """Rasterise the dots, globules, nests, lacunae and vessels of one view, in [0, 1]."""
    canvases = {}
    s = SUPERSAMPLE
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    cos_t, sin_t = pm.cos(t), pm.sin(t)
    for kind, dots in look.dots.items():
        image, draw = _canvas(size)
        dark_image, dark_draw = _canvas(size) if kind == "lacunae" else (None, None)
        cols, rows = to_pixels(dots[:, 0], dots[:, 1])
        cos_angles, sin_angles = pm.cos(dots[:, 4]), pm.sin(dots[:, 4])
        for (_, _, r, elongation, _, tone), col, row, cos, sin in zip(dots, cols, rows, cos_angles, sin_angles):
            a = r * radius_px * s * np.sqrt(elongation)
            b = max(r * radius_px * s / np.sqrt(elongation), 0.8)
            ex, ey = a * cos_t, b * sin_t
            px = col * s + ex * cos - ey * sin
            py = row * s + ex * sin + ey * cos
            polygon = list(zip(px.tolist(), py.tolist()))
            draw.polygon(polygon, fill=int(255 * tone))
            if dark_draw is not None:  # the darker lacunae are purple
                dark_draw.polygon(polygon, fill=int(255 * max(0.0, 1.6 * tone - 0.8)))
        canvases[kind] = _canvas_array(image, size, (1.2 if kind == "blue_nests" else 0.6) * size / 128)
        if dark_image is not None:
            canvases["lacunae_dark"] = _canvas_array(dark_image, size, 0.6 * size / 128)
    if len(look.vessels):
        image, draw = _canvas(size)
        c0, r0 = to_pixels(look.vessels[:, 0], look.vessels[:, 1])
        c1, r1 = to_pixels(look.vessels[:, 2], look.vessels[:, 3])
        for a, b, c, d, w in zip(c0, r0, c1, r1, look.vessels[:, 4]):
            draw.line([(a * s, b * s), (c * s, d * s)], fill=255, width=max(1, round(w * radius_px * s)))
        canvases["vessels"] = _canvas_array(image, size, 0.3 * size / 128)
    return canvases


def _hair(rng: np.random.Generator, view: View, size: int, radius: float) -> list:
    """Curved hairs, each through a point inside the image: [(coverage, colour)]."""
    s, px = SUPERSAMPLE, size / 128  # line widths scale with the image
    image, draw = _canvas(size)
    for _ in range(rng.integers(2, 12)):
        centre = rng.uniform(0.1, 0.9, 2) * size
        angles = rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.6) * np.linspace(-0.5, 0.5, 16)
        steps = np.stack([pm.cos(angles), pm.sin(angles)], 1) * rng.uniform(0.4, 1.2) * size / 16
        points = centre + np.cumsum(steps, axis=0) - steps[:8].sum(axis=0)
        width = max(1, round(rng.uniform(1.0, 2.0) * s * px))
        shade = int(255 * rng.uniform(0.8, 1.0))
        draw.line([tuple(pt) for pt in (points * s).tolist()], fill=shade, width=width, joint="curve")
    return [(_canvas_array(image, size)[..., None], HAIR)]


def _ruler(rng: np.random.Generator, view: View, size: int, radius: float) -> list:
    """A ruler's band along one edge, then its dark ticks."""
    s, px = SUPERSAMPLE, size / 128
    band, band_draw = _canvas(size)
    ticks, tick_draw = _canvas(size)
    depth = rng.uniform(0.08, 0.12) * size
    band_draw.rectangle([0, 0, size * s, depth * s], fill=200)
    step = rng.uniform(0.035, 0.05) * size
    for i, position in enumerate(np.arange(rng.uniform(0, step), size, step)):
        tick = depth * (0.85 if i % 5 == 0 else 0.5)
        tick_draw.line([(position * s, 0), (position * s, tick * s)], fill=255, width=max(1, round(0.6 * s * px)))
    side = 90 * int(rng.integers(4))
    band = _canvas_array(band.rotate(side), size)[..., None]
    ticks = _canvas_array(ticks.rotate(side), size)[..., None]
    return [(band, RULER), (ticks, HAIR)]


def _ink(rng: np.random.Generator, view: View, size: int, radius: float, width_scale: float = 1.0) -> list:
    """A surgical marker arc around the lesion, kept inside the field of view; `width_scale` times
    the default stroke."""
    s, px = SUPERSAMPLE, size / 128
    image, draw = _canvas(size)
    angles = rng.uniform(0, 2 * np.pi) + np.linspace(0, rng.uniform(0.8, 1.8), 24)
    reach = min(rng.uniform(1.3, 1.6) * radius, 0.8)  # image half-widths from the lesion centre
    cols = (view.offset[0] + reach * pm.cos(angles) + 1) * size / 2
    rows = (view.offset[1] + reach * pm.sin(angles) + 1) * size / 2
    width = max(2, round(rng.uniform(1.5, 3.0) * s * px * width_scale))
    draw.line(list(zip((cols * s).tolist(), (rows * s).tolist())), fill=220, width=width, joint="curve")
    return [(_canvas_array(image, size, 0.5 * px)[..., None], INK)]


ARTEFACT_SHAPES = {"hair": _hair, "ruler": _ruler, "ink": _ink}  # drawn and laid on in ARTEFACTS order


def _draw_artefacts(rng: np.random.Generator, own_stream, linear: np.ndarray, view: View, size: int, radius: float,
                    ink_width: float = 1.0):
    """Hair, ruler and ink over skin and lesion, in linear RGB, and the ink's share of each pixel.

    The shapes of the view's base-rate artefacts (`base_artefacts`) are drawn from `rng` even when
    absent, so what `rng` draws next (the sensor noise) never depends on artefact_correlation;
    an artefact beyond them comes from `own_stream(index in ARTEFACTS)`.
    """
    present = (view.hair, view.ruler, view.ink)
    base = present if view.base_artefacts is None else view.base_artefacts
    ink = np.zeros(linear.shape[:2], dtype=np.float32)
    for index, name in enumerate(ARTEFACTS):
        if not (present[index] or base[index]):
            continue
        shape = functools.partial(_ink, width_scale=ink_width) if name == "ink" else ARTEFACT_SHAPES[name]
        layers = shape(rng if base[index] else own_stream(index), view, size, radius)
        if not present[index]:
            continue
        for cover, colour in layers:
            linear = linear * (1 - cover) + cover * colour
        if name == "ink":  # laid on last, so its share of the colour is its coverage
            ink = layers[0][0][..., 0]
    return linear, ink


# ---------------------------------------------------------------------------------------------
# Colour: CIELAB skin from ITA, the site's light, sRGB

def _dot3(vectors: np.ndarray, weights) -> np.ndarray:
    """vectors[..., 3] . weights, summed left to right (a matmul's BLAS order depends on the CPU)."""
    return vectors[..., 0] * weights[0] + vectors[..., 1] * weights[1] + vectors[..., 2] * weights[2]


_LUMA = RGB_TO_XYZ[1]
_LUT_LEVELS = 4096  # linear values are quantised to this many levels before the sRGB curve
_LUT_INPUT = np.linspace(0.0, 1.0, _LUT_LEVELS)
_SRGB_LUT = np.round(
    255 * np.where(_LUT_INPUT <= 0.0031308, 12.92 * _LUT_INPUT, 1.055 * pm.power(_LUT_INPUT, 1 / 2.4) - 0.055)
).astype(np.uint8)


def skin_lab(ita: float, a: float, b: float) -> np.ndarray:
    """A CIELAB skin colour whose ITA is `ita`: L* = 50 + b* tan(ITA), b* reduced if L* leaves [25, 82]."""
    tangent = float(pm.tan(pm.radians(ita)))
    lightness = 50 + b * tangent
    if lightness > 82 or lightness < 25:
        lightness = float(np.clip(lightness, 25, 82))
        b = (lightness - 50) / tangent
    return np.array([lightness, a, b])


def _site_colour(linear: np.ndarray, site: Site, neutral: bool = False) -> np.ndarray:
    """The scene under the site's light (gains of luminance 1; white when `neutral`), then
    saturation about luma (which it keeps)."""
    light = np.ones(3) if neutral else np.asarray(site.light) / _dot3(np.asarray(site.light), _LUMA)
    lit = linear * light.astype(np.float32)
    luma = _dot3(lit, _LUMA.astype(np.float32))[..., None]
    return luma + np.float32(site.saturation) * (lit - luma)


def _to_srgb8(linear: np.ndarray) -> np.ndarray:
    return _SRGB_LUT[np.round(np.clip(linear, 0, 1) * (_LUT_LEVELS - 1)).astype(np.intp)]


# ---------------------------------------------------------------------------------------------
# Files


def _render_lesion_files(job: tuple[LesionPlan, int, int, str, bool]) -> None:
    plan, seed, size, root, artefact_masks = job
    look = lesion_appearance(seed, plan)
    for view in plan.views:
        image, mask, ink = render(seed, plan, look, view, size, ink_cover=True)
        Image.fromarray(image).save(Path(root) / IMAGE_DIR / f"{view.image_id}.jpg", quality=JPEG_QUALITY)
        Image.fromarray(mask.astype(np.uint8) * 255).save(Path(root) / MASK_DIR / f"{view.image_id}_segmentation.png")
        if artefact_masks and view.ink:
            Image.fromarray((ink > INK_MASK_THRESHOLD).astype(np.uint8) * 255).save(ink_mask_path(root, view.image_id))
