"""Colour correction before ITA (benchbox.data.ita): synthderm as the known answer, the validity
rules, and the per-source gains worked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchbox.data import ita, synthderm
from benchbox.data.arrays import ImageSet
from benchbox.data.info import describe
from benchbox.data.load import load_dataset
from benchbox.errors import BenchboxError
from benchbox.methods.recall_ensemble import skin_tone_groups


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return synthderm.generate(tmp_path_factory.mktemp("ita") / "d", n_lesions=300, size=128, seed=11, workers=1)


def errors_by_site(root, correction: str) -> pd.DataFrame:
    """Per site: median absolute and median signed error of the measured ITA against the planted one."""
    manifest = load_dataset(f"synthderm:{root}", ita_correction=correction, progress=False).manifest
    truth = pd.read_csv(root / synthderm.TRUTH_FILE).set_index("image_id")["ita"]
    error = manifest["ita"].to_numpy() - truth.loc[manifest["image_id"]].to_numpy()
    return pd.DataFrame({"site": manifest["source"], "error": error}).groupby("site")["error"].agg(
        abs_error=lambda e: e.abs().median(), bias="median")


def test_corrected_ita_recovers_the_planted_skin_ita_on_every_site(synth):
    corrected, uncorrected, per_image = (errors_by_site(synth, c) for c in ("source", "none", "image"))
    table = pd.concat({"corrected": corrected, "uncorrected": uncorrected, "per-image SoG": per_image}, axis=1)
    assert len(table) == len(synthderm.SITES)
    assert (corrected["abs_error"] <= 3.0).all(), table.round(2).to_string()
    # the sites' lights bias the ITA of the pixels as they are, as HAM10000's sources do
    assert uncorrected.loc["synth_modern", "bias"] > 15 and uncorrected.loc["synth_video", "bias"] < -3, table.to_string()
    assert (uncorrected["abs_error"] > corrected["abs_error"]).all(), table.round(2).to_string()
    # plain per-image Shades of Gray turns skin grey: ITA far off on every site
    assert (per_image["abs_error"] > 20).all(), table.round(2).to_string()


def test_source_gains_map_each_sources_median_light_to_the_reference_skin_colour():
    estimates = np.array([[0.30, 0.20, 0.25], [0.40, 0.30, 0.35], [0.20, 0.10, 0.05], [0.50, 0.30, 0.20]])
    sources = np.array(["blue", "blue", "red", ""], dtype=object)
    gains, lights = ita.correction_gains(estimates, sources, "source")
    # the median log-chromaticity of the two blue images: log(R/G) = log(1.5) and log(4/3), log(B/G) = log(1.25) and log(7/6)
    median_blue = np.array([np.sqrt(1.5 * 4 / 3), 1.0, np.sqrt(1.25 * 7 / 6)])
    reference = ita.REFERENCE_SKIN_LINEAR
    np.testing.assert_allclose(lights["blue"]["light"], median_blue)
    corrected = median_blue * gains[0]
    luminance = np.array([0.2126729, 0.7151522, 0.0721750])
    np.testing.assert_allclose(corrected / corrected.sum(), reference / reference.sum())  # the reference's chromaticity
    np.testing.assert_allclose(corrected @ luminance, median_blue @ luminance)  # at the light's own luminance
    np.testing.assert_array_equal(gains[0], gains[1])  # one source, one correction
    assert set(lights) == {"blue", "red", "(no source)"} and lights["blue"]["images"] == 2
    none, _ = ita.correction_gains(estimates, sources, "none")
    np.testing.assert_array_equal(none, np.ones((4, 3)))
    grey, _ = ita.correction_gains(estimates, sources, "image")
    np.testing.assert_allclose(np.ptp(estimates * grey, axis=1), 0, atol=1e-12)  # every image's estimate made grey
    with pytest.raises(BenchboxError, match="source, image, none"):
        ita.correction_gains(estimates, sources, "grey-world")


def skin_image(lab: tuple[float, float, float], size: int = 64) -> np.ndarray:
    linear = ita.lab_to_linear_rgb(np.array(lab, dtype=float))
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.clip(linear, 0, 1) ** (1 / 2.4) - 0.055)
    return np.broadcast_to(np.round(255 * srgb).astype(np.uint8), (size, size, 3)).copy()


def test_an_image_whose_skin_cannot_be_skin_gets_nan_with_the_reason():
    blue = skin_image((70.0, 0.0, -12.0))  # b* < 0 after a neutral correction: not a skin colour
    value, reason = ita.corrected_skin_tone(blue, None, np.ones(3))
    assert np.isnan(value) and "can be skin" in reason and "b* > 0" in reason
    skin = skin_image((65.0, 10.0, 15.0))
    value, reason = ita.corrected_skin_tone(skin, None, np.ones(3))
    assert reason == "" and value == pytest.approx(45.0, abs=1.0)  # arctan(15 / 15), after 8-bit rounding
    black_field = skin.copy()
    black_field[:, :24] = 0  # a dermoscope's black field over part of the skin ring is left out
    assert ita.corrected_skin_tone(black_field, None, np.ones(3))[0] == pytest.approx(value, abs=1e-9)
    value, reason = ita.corrected_skin_tone(skin, None, np.full(3, np.nan))
    assert np.isnan(value) and reason == ita.NO_ESTIMATE_REASON
    assert ita.corrected_skin_tone(np.full((64, 64, 3), 128, np.uint8), None, np.ones(3))[1] == ita.GRAYSCALE_REASON


def test_data_info_reports_skin_tone_per_source_and_the_correction(synth):
    dataset = load_dataset(f"synthderm:{synth}", progress=False)
    text = describe(dataset)
    assert "| source" in text and "ITA quartiles" in text and "no ITA" in text
    for site in synthderm.SITES:
        assert f"| {site.name}" in text
    assert "after per-source colour correction" in text and "synth_modern (" in text
    with pytest.raises(BenchboxError, match="--ita-correction"):
        load_dataset(f"synthderm:{synth}", ita_correction="gray")


def test_the_recalibration_groups_by_the_datasets_corrected_ita():
    images = np.broadcast_to(skin_image((65.0, 10.0, 15.0))[:8, :8], (3, 8, 8, 3)).copy()
    data = ImageSet(np.array(["a", "b", "c"]), images, np.zeros(3, np.int64), np.array(["a", "b", "c"]),
                    ita=np.array([50.0, 10.0, np.nan]))
    assert list(skin_tone_groups(data)) == ["light", "dark", "unknown"]
    assert list(skin_tone_groups(data.subset(np.array([1])))) == ["dark"]
