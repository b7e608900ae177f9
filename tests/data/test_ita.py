import numpy as np
import pytest
from skimage.color import lab2rgb, rgb2lab

from benchbox.data.ita import ita_category, ita_degrees, rgb_to_lab, skin_region
from benchbox.metrics import ita_light_dark


def test_rgb_to_lab_matches_skimage():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (50, 3), dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_lab(rgb), rgb2lab(rgb[None] / 255.0)[0], atol=0.02)


@pytest.mark.parametrize("lightness,b_star", [(75.0, 15.0), (55.0, 20.0), (35.0, 18.0), (25.0, 12.0)])
def test_uniform_skin_recovers_planted_ita(lightness, b_star):
    rgb = (lab2rgb(np.array([[[lightness, 8.0, b_star]]])) * 255).round().astype(np.uint8)
    image = np.broadcast_to(rgb, (64, 64, 3)).copy()
    expected = np.degrees(np.arctan((rgb2lab(rgb / 255.0)[0, 0, 0] - 50) / rgb2lab(rgb / 255.0)[0, 0, 2]))
    assert ita_degrees(image) == pytest.approx(expected, abs=0.01)


def test_lesion_pixels_are_ignored_when_a_mask_is_given():
    skin = (lab2rgb(np.array([[[70.0, 10.0, 18.0]]])) * 255).round().astype(np.uint8)
    image = np.broadcast_to(skin, (64, 64, 3)).copy()
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    image[mask] = (20, 10, 5)  # a dark lesion covering a quarter of the image
    assert ita_degrees(image, mask) == pytest.approx(ita_degrees(np.broadcast_to(skin, (64, 64, 3)).copy()), abs=1e-9)
    assert not skin_region(64, 64, mask)[mask].any()


def test_ring_without_mask_excludes_centre_and_corners():
    region = skin_region(64, 64, None)
    assert not region[32, 32] and not region[0, 0] and region[32, 1]


@pytest.mark.parametrize(
    "degrees,category,light_dark",
    [(60, "very_light", "light"), (55, "light", "light"), (41.5, "light", "light"), (30, "intermediate", "light"),
     (28, "tan", "dark"), (10, "brown", "dark"), (-30, "dark", "dark"), (-45, "dark", "dark"), (float("nan"), "", "unknown")],
)
def test_categories_use_the_standard_bounds(degrees, category, light_dark):
    assert ita_category(degrees) == category
    assert ita_light_dark(np.array([degrees]), 28).tolist() == [light_dark]


def test_rgb_to_lab_is_numpys_formula_computed_portably():
    """The uint8 lookup table and the float path agree, and both match the plain numpy formula."""
    rgb = np.random.default_rng(2).integers(0, 256, (500, 3), dtype=np.uint8)
    srgb = rgb / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]).T
    f = np.cbrt(xyz / np.array([0.95047, 1.0, 1.08883]))
    f = np.where(f > 6 / 29, f, (xyz / np.array([0.95047, 1.0, 1.08883])) / (3 * (6 / 29) ** 2) + 4 / 29)
    expected = np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=-1)
    np.testing.assert_allclose(rgb_to_lab(rgb), expected, rtol=1e-12, atol=1e-11)
    np.testing.assert_array_equal(rgb_to_lab(rgb), rgb_to_lab(rgb.astype(np.float64)))
