"""Transcendental functions that give the same bits on every CPU.

Why: numpy sends float64 exp, log, arctan2, power, cbrt, tan (and float32 exp, log, sin, cos)
to SIMD kernels chosen at run time (AVX-512/SVML on one machine, AVX2 or glibc's scalar libm on
another) whose results differ in the last bits, which is enough to flip a rounded pixel, a JPEG
byte and so a dataset's hash. Python's `math` calls the platform libm, which differs across
systems and glibc's FMA variants. The functions here use only numpy operations that IEEE 754
defines exactly elementwise (+ - * /, sqrt, floor, rint, ldexp, frexp, abs, copysign, comparisons,
where, clip) in a fixed order: Cody-Waite range reduction and fixed polynomials by Horner, so
their results depend on the inputs only. They take anything array-like, compute in float64 and
return float64 (cast the result for float32 pipelines). Accuracy is a few ulp (relative error
~1e-15) over the ranges synthderm and the ITA use (sin and cos tested to |x| = 1e4; their
reduction stays exact to about 1e6); NaN passes through.

Safe from numpy on any dispatch target: the exact operations above, np.square and x**2, integer
powers written as products, reductions in numpy's fixed pairwise order (sum, mean, std), np.interp,
np.fft (pocketfft has no run-time dispatch). Not safe: np.exp/log/sin/cos/tan/arctan2/power/cbrt
and ** with any exponent other than 2 (x**3 calls pow), np.angle(np.exp(1j * x)), and BLAS (@,
matmul, dot, linalg) whose kernels and summation order depend on the CPU.
"""

from __future__ import annotations

import functools
import math

import numpy as np

# Cody-Waite splits: the high parts have trailing zero bits, so n * HI is exact for the n used.
_LN2_HI = 6.93147180369123816490e-01  # ln 2, first 32 bits
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
_INV_LN2 = 1.44269504088896338700e00
_PIO2_1 = 1.57079632673412561417e00  # pi/2, first 33 bits
_PIO2_2 = 6.07710050630396597660e-11  # next 33 bits
_PIO2_3 = 2.02226624879595063154e-21  # the rest
_INV_PIO2 = 6.36619772367581382433e-01
_PI = 3.14159265358979311600e00
_PI_LO = 1.22464679914735317723e-16  # pi - _PI
_INV_TWO_PI = _INV_PIO2 / 4
_TWO_PI_HI = 4 * _PIO2_1  # 2 pi in three parts (scaling by 4 is exact)
_TWO_PI_MID = 4 * _PIO2_2
_TWO_PI_LO = 4 * _PIO2_3

_EXP_MAX = 709.782712893383973096  # exp overflows above this
_EXP_MIN = -745.133219101941108420  # exp underflows to 0 below this

# Taylor coefficients, highest degree first (Horner order).
_EXP_POLY = tuple(1.0 / math.factorial(k) for k in range(13, -1, -1))  # |r| <= ln2/2: error < 1e-17
_SIN_POLY = tuple((-1) ** k / math.factorial(2 * k + 1) for k in range(9, -1, -1))  # in r^2, times r
_COS_POLY = tuple((-1) ** k / math.factorial(2 * k) for k in range(9, -1, -1))  # in r^2
_ATANH_POLY = tuple(1.0 / (2 * k + 1) for k in range(12, -1, -1))  # log: 2 s P(s^2), |s| <= 0.172
_ATAN_POLY = tuple((-1) ** k / (2 * k + 1) for k in range(12, -1, -1))  # |t| <= tan(pi/16) = 0.199


def _horner(coefficients: tuple[float, ...], x: np.ndarray) -> np.ndarray:
    result = x * coefficients[0] + coefficients[1]
    for c in coefficients[2:]:
        result = result * x + c
    return result


def _scalar_out(function):
    """Scalars in, numpy float64 scalars out (as numpy's ufuncs do); arrays in, arrays out."""

    @functools.wraps(function)
    def wrapper(*args):
        return function(*args)[()]

    return wrapper


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


@_scalar_out
def exp(x) -> np.ndarray:
    """e**x: x = n ln2 + r, |r| <= ln2/2, exp(r) by its Taylor polynomial, times 2**n."""
    x = _f64(x)
    clipped = np.clip(x, _EXP_MIN - 1, _EXP_MAX + 1)  # keeps n small; NaN stays NaN
    n = np.rint(clipped * _INV_LN2)
    r = (clipped - n * _LN2_HI) - n * _LN2_LO
    n = np.where(np.isnan(n), 0, n).astype(np.int64)
    with np.errstate(over="ignore"):  # x just below _EXP_MAX + 1, replaced below
        result = np.ldexp(_horner(_EXP_POLY, r), n)
    result = np.where(x > _EXP_MAX, np.inf, result)
    return np.where(x < _EXP_MIN, 0.0, result)


@_scalar_out
def log(x) -> np.ndarray:
    """Natural log: x = m 2**e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh((m-1)/(m+1)) by series."""
    x = _f64(x)
    m, e = np.frexp(x)
    small = m < math.sqrt(0.5)
    m = np.where(small, 2 * m, m)
    e = (e - small).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # only for x < 0, replaced below
        s = (m - 1) / (m + 1)
    result = e * _LN2_HI + (2 * s * _horner(_ATANH_POLY, s * s) + e * _LN2_LO)
    result = np.where(x == 0, -np.inf, result)
    result = np.where(x == np.inf, np.inf, result)
    return np.where((x < 0) | np.isnan(x), np.nan, result)


def _reduce_pio2(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x = n pi/2 + r with |r| <= pi/4 (three-part Cody-Waite); returns r and n mod 4."""
    n = np.rint(x * _INV_PIO2)
    with np.errstate(invalid="ignore"):  # infinite x, replaced by the caller
        r = ((x - n * _PIO2_1) - n * _PIO2_2) - n * _PIO2_3
        quadrant = n - 4 * np.floor(n / 4)  # exact for integer-valued n
    return r, np.where(np.isfinite(quadrant), quadrant, 0).astype(np.int64)


def _sin_cos_kernel(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = r * r
    return r * _horner(_SIN_POLY, z), _horner(_COS_POLY, z)


@_scalar_out
def sin(x) -> np.ndarray:
    x = _f64(x)
    r, q = _reduce_pio2(x)
    s, c = _sin_cos_kernel(r)
    result = np.select([q == 0, q == 1, q == 2], [s, c, -s], -c)
    return np.where(np.isfinite(x), result, np.nan)


@_scalar_out
def cos(x) -> np.ndarray:
    x = _f64(x)
    r, q = _reduce_pio2(x)
    s, c = _sin_cos_kernel(r)
    result = np.select([q == 0, q == 1, q == 2], [c, -s, -c], s)
    return np.where(np.isfinite(x), result, np.nan)


@_scalar_out
def tan(x) -> np.ndarray:
    x = _f64(x)
    r, q = _reduce_pio2(x)
    s, c = _sin_cos_kernel(r)
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.where(q & 1, -c / s, s / c)
    return np.where(np.isfinite(x), result, np.nan)


def _atan_unit(t: np.ndarray) -> np.ndarray:
    """arctan on [0, 1]: two argument halvings atan t = 2 atan(t / (1 + sqrt(1 + t^2))), then series."""
    for _ in range(2):
        t = t / (1 + np.sqrt(1 + t * t))
    return 4 * (t * _horner(_ATAN_POLY, t * t))


@_scalar_out
def arctan2(y, x) -> np.ndarray:
    """The angle of (x, y) in [-pi, pi], with numpy's signs for zeros and infinities."""
    y, x = np.broadcast_arrays(_f64(y), _f64(x))
    ay, ax = np.abs(y), np.abs(x)
    big, small = np.maximum(ax, ay), np.minimum(ax, ay)
    both_inf = np.isinf(ax) & np.isinf(ay)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(big == 0, 0.0, np.where(both_inf, 1.0, small / np.where(big == 0, 1.0, big)))
    angle = _atan_unit(ratio)
    angle = np.where(ay > ax, (_PIO2_1 - angle) + (_PIO2_2 + _PIO2_3), angle)
    angle = np.where(np.signbit(x), (_PI - angle) + _PI_LO, angle)
    angle = np.copysign(angle, y)
    return np.where(np.isnan(x) | np.isnan(y), np.nan, angle)


@_scalar_out
def arctan(x) -> np.ndarray:
    return arctan2(x, np.ones_like(_f64(x)))


@_scalar_out
def hypot(x, y) -> np.ndarray:
    """sqrt(x^2 + y^2) without overflow: big * sqrt(1 + (small / big)^2)."""
    x, y = np.broadcast_arrays(np.abs(_f64(x)), np.abs(_f64(y)))
    big, small = np.maximum(x, y), np.minimum(x, y)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where((big == 0) | np.isinf(big), 0.0, small / np.where(big == 0, 1.0, big))
    result = big * np.sqrt(1 + ratio * ratio)
    return np.where(np.isinf(x) | np.isinf(y), np.inf, result)


@_scalar_out
def power(x, y) -> np.ndarray:
    """x**y for x >= 0 (NaN for x < 0): exp(y log x); relative error ~ |y ln x| * 1e-16."""
    x, y = np.broadcast_arrays(_f64(x), _f64(y))
    with np.errstate(invalid="ignore"):
        result = exp(y * log(x))
    result = np.where(x == 0, np.where(y > 0, 0.0, np.where(y == 0, 1.0, np.inf)), result)
    return np.where(y == 0, 1.0, result)


@_scalar_out
def cbrt(x) -> np.ndarray:
    """Real cube root: exp(log|x| / 3), one Newton step, sign restored."""
    x = _f64(x)
    a = np.abs(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = exp(log(a) / 3)
        c = np.where((a == 0) | np.isinf(a), a, c - (c - a / (c * c)) / 3)
    return np.copysign(c, x)


@_scalar_out
def wrap(angle) -> np.ndarray:
    """An angle in radians wrapped into [-pi, pi] like np.angle(np.exp(1j * angle)): minus the nearest
    multiple of 2 pi (three-part Cody-Waite)."""
    angle = _f64(angle)
    n = np.rint(angle * _INV_TWO_PI)
    return ((angle - n * _TWO_PI_HI) - n * _TWO_PI_MID) - n * _TWO_PI_LO


@_scalar_out
def radians(degrees) -> np.ndarray:
    return _f64(degrees) * (_PI / 180)


@_scalar_out
def degrees(radians) -> np.ndarray:
    return _f64(radians) * (180 / _PI)
