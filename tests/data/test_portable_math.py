import math
import os
import subprocess
import sys

import numpy as np
import pytest

from benchbox.data import portable_math as pm

RNG = np.random.default_rng(0)
WIDE = np.concatenate([RNG.uniform(-1, 1, 20000), RNG.uniform(-50, 50, 20000), RNG.uniform(-700, 700, 5000)])
ANGLES = np.concatenate([RNG.uniform(-7, 7, 20000), RNG.uniform(-1e4, 1e4, 20000), np.arange(-40, 41) * np.pi / 4])
POSITIVE = np.concatenate([10.0 ** RNG.uniform(-300, 300, 20000), RNG.uniform(0.5, 2.0, 20000), [1.0, 2.0, 0.5, 5e-324]])


def close(ours, reference, rtol=1e-14, atol=0.0):
    np.testing.assert_allclose(ours, reference, rtol=rtol, atol=atol)


def test_exp():
    close(pm.exp(WIDE), np.exp(WIDE))
    close(pm.exp(np.array([0.0, -0.0, 709.7, -708.0, 1e-300])), np.exp([0.0, -0.0, 709.7, -708.0, 1e-300]))
    assert pm.exp(0.0) == 1.0
    np.testing.assert_array_equal(pm.exp([710.0, 1e308, np.inf, -746.0, -np.inf]), [np.inf, np.inf, np.inf, 0.0, 0.0])
    assert np.isnan(pm.exp(np.nan))


def test_log():
    close(pm.log(POSITIVE), np.log(POSITIVE), atol=1e-15)  # absolute near log(1) = 0
    near_one = 1 + RNG.uniform(-1e-3, 1e-3, 1000)
    close(pm.log(near_one), np.log(near_one))
    assert pm.log(1.0) == 0.0 and pm.log(np.inf) == np.inf and pm.log(0.0) == -np.inf
    assert np.isnan(pm.log(-1.0)) and np.isnan(pm.log(np.nan))


@pytest.mark.parametrize("name", ["sin", "cos"])
def test_sin_cos(name):
    ours, reference = getattr(pm, name)(ANGLES), getattr(np, name)(ANGLES)
    close(ours, reference, atol=1e-15)  # absolute at the zeros
    far_from_zero = np.abs(reference) > 1e-3
    close(ours[far_from_zero], reference[far_from_zero])
    assert np.isnan(getattr(pm, name)([np.inf, -np.inf, np.nan])).all()
    assert pm.sin(0.0) == 0.0 and pm.cos(0.0) == 1.0


def test_tan():
    x = RNG.uniform(-10, 10, 20000)
    x = x[np.abs(np.cos(x)) > 1e-3]
    close(pm.tan(x), np.tan(x), rtol=1e-13, atol=1e-15)
    assert pm.tan(math.radians(45.0)) == pytest.approx(1.0, abs=1e-15)


def test_arctan2_over_every_quadrant_and_special_cases():
    y, x = RNG.normal(0, 10, (2, 40000)) * 10.0 ** RNG.uniform(-5, 5, (2, 40000))
    close(pm.arctan2(y, x), np.arctan2(y, x))
    close(pm.arctan(WIDE), np.arctan(WIDE), atol=1e-16)
    special = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf]
    yy, xx = np.meshgrid(special, special)
    ours, reference = pm.arctan2(yy, xx), np.arctan2(yy, xx)
    close(ours, reference)
    np.testing.assert_array_equal(np.signbit(ours), np.signbit(reference))
    assert np.isnan(pm.arctan2([np.nan, 1.0], [1.0, np.nan])).all()


def test_hypot():
    x, y = RNG.normal(0, 1, (2, 20000)) * 10.0 ** RNG.uniform(-200, 200, (2, 20000))
    close(pm.hypot(x, y), np.hypot(x, y))
    close(pm.hypot(1e300, 1e300), math.sqrt(2) * 1e300)  # no overflow
    np.testing.assert_array_equal(pm.hypot([0.0, 3.0, np.inf, np.nan], [0.0, -4.0, np.nan, 1.0]), [0.0, 5.0, np.inf, np.nan])


def test_power():
    x = 10.0 ** RNG.uniform(-20, 20, 20000)
    y = RNG.uniform(-2.5, 2.5, 20000)
    close(pm.power(x, y), np.power(x, y), rtol=2e-14)
    lut = np.linspace(0, 1, 4096)
    close(pm.power(lut, 1 / 2.4), lut ** (1 / 2.4))
    np.testing.assert_array_equal(pm.power([0.0, 0.0, 0.0, 5.0, 4.0], [2.0, 0.0, -1.0, 0.0, 0.5]), [0.0, 1.0, np.inf, 1.0, 2.0])
    assert np.isnan(pm.power(-2.0, 0.5))


def test_cbrt():
    x = np.concatenate([POSITIVE, -POSITIVE, [0.0, -0.0, 8.0, -27.0]])
    close(pm.cbrt(x), np.cbrt(x))
    assert pm.cbrt(8.0) == 2.0 and pm.cbrt(-27.0) == -3.0 and pm.cbrt(np.inf) == np.inf


def test_wrap_matches_the_complex_angle():
    angles = np.concatenate([RNG.uniform(-4 * np.pi, 4 * np.pi, 20000), [0.0, 1.0, -3.0]])
    close(pm.wrap(angles), np.angle(np.exp(1j * angles)), atol=1e-14)
    assert (np.abs(pm.wrap(angles)) <= np.pi).all()


def test_scalars_in_give_numpy_scalars_out():
    assert isinstance(pm.exp(1.0), np.float64) and isinstance(pm.cos(np.float64(0.5)), np.float64)
    assert pm.exp(np.zeros((2, 3))).shape == (2, 3)


def test_results_do_not_depend_on_numpy_cpu_dispatch():
    """The same bits with numpy's default (AVX-512 where present) and its baseline-only dispatch."""
    script = (
        "import hashlib, numpy as np; from benchbox.data import portable_math as pm;"
        "x = np.random.default_rng(1).uniform(-50, 50, 50000); p = np.abs(x) + 1e-3;"
        "parts = [pm.exp(x), pm.log(p), pm.sin(x), pm.cos(x), pm.tan(x), pm.arctan2(x, x[::-1]), pm.hypot(x, x[::-1]),"
        " pm.power(p, 1 / 2.4), pm.cbrt(x), pm.wrap(x)];"
        "print(hashlib.sha256(b''.join(a.tobytes() for a in parts)).hexdigest())"
    )
    digests = {
        subprocess.run([sys.executable, "-c", script], env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
        for env in ({}, {"NPY_ENABLE_CPU_FEATURES": "X86_V3"}, {"NPY_ENABLE_CPU_FEATURES": "SSE SSE2 SSE3 SSSE3 SSE41 POPCNT SSE42"})
    }
    assert len(digests) == 1
