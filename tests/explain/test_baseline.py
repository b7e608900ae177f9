from __future__ import annotations

import numpy as np

from benchbox.explain.baseline import centred_gaussian_map


def test_centred_gaussian_matches_the_closed_form():
    # 5 x 5, sigma = 0.2 * 5 = 1 pixel; corners at distance^2 = 8 -> exp(-4) before min-max.
    out = centred_gaussian_map(5, 5, sigma_fraction=0.2)
    low = np.exp(-4.0)
    assert out[2, 2] == 1.0 and out[0, 0] == 0.0
    np.testing.assert_allclose(out[2, 3], (np.exp(-0.5) - low) / (1 - low), rtol=1e-6)
    np.testing.assert_allclose(out[1, 1], (np.exp(-1.0) - low) / (1 - low), rtol=1e-6)
    np.testing.assert_allclose(out, out.T)
    np.testing.assert_allclose(out, out[::-1, ::-1])


def test_centred_gaussian_scales_sigma_with_each_side():
    # 9 x 17 with sigma_fraction 0.25: sigma is 2.25 rows and 4.25 columns; the centre is (4, 8).
    out = centred_gaussian_map(9, 17, sigma_fraction=0.25)
    assert out.shape == (9, 17) and out.dtype == np.float32
    low = np.exp(-0.5 * ((4 / 2.25) ** 2 + (8 / 4.25) ** 2))
    assert out[4, 8] == 1.0
    np.testing.assert_allclose(out[6, 8], (np.exp(-0.5 * (2 / 2.25) ** 2) - low) / (1 - low), rtol=1e-6)
    np.testing.assert_allclose(out[4, 12], (np.exp(-0.5 * (4 / 4.25) ** 2) - low) / (1 - low), rtol=1e-6)
