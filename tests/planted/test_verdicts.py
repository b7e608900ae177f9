"""The pieces of `benchbox validate` that decide a verdict: interval rows, the marker's energy share,
the Wilson interval and the markdown, on hand-worked numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchbox.planted.report import validation_markdown
from benchbox.planted.shortcut import marker_energy_share
from benchbox.planted.validate import Context, binomial_interval, interval_row, run_checks


def test_a_planted_effect_passes_only_with_its_interval_on_the_planted_side():
    above = {"value": 0.2, "ci_low": 0.05, "ci_high": 0.35}
    across = {"value": 0.1, "ci_low": -0.05, "ci_high": 0.25}
    below = {"value": -0.2, "ci_low": -0.35, "ci_high": -0.05}
    tiny = {"value": 0.004, "ci_low": 0.001, "ci_high": 0.011}  # real but below the margin
    assert interval_row("c", "p", "m", above, expect_effect=True, sign=1).verdict == "pass"
    assert interval_row("c", "p", "m", below, expect_effect=True, sign=1).verdict == "fail"
    assert interval_row("c", "p", "m", below, expect_effect=True, sign=-1).verdict == "pass"
    assert interval_row("c", "p", "m", across, expect_effect=True, sign=1).verdict == "fail"
    # nothing planted: fails only when the whole interval lies beyond the margin on the planted side
    assert interval_row("c", "p", "m", across, expect_effect=False, sign=1).verdict == "pass"
    assert interval_row("c", "p", "m", tiny, expect_effect=False, sign=1).verdict == "pass"
    assert interval_row("c", "p", "m", above, expect_effect=False, sign=1).verdict == "fail"
    assert interval_row("c", "p", "m", above, expect_effect=False, sign=-1).verdict == "pass"
    assert interval_row("c", "p", "m", below, expect_effect=False, sign=-1).verdict == "fail"
    undefined = interval_row("c", "p", "m", {"value": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                                             "reason": "one class"}, expect_effect=False, sign=1)
    assert undefined.verdict == "fail" and "one class" in undefined.detail
    read_back = interval_row("c", "p", "m", {"value": None, "ci_low": None, "ci_high": None, "reason": "too few"},
                             expect_effect=True, sign=-1)  # metrics.json stores NaN as null
    assert read_back.verdict == "fail" and math.isnan(read_back.value) and "too few" in read_back.detail


def test_marker_energy_share_by_hand():
    maps = np.array([[[1.0, 3.0], [0.0, -2.0]], [[0.0, 0.0], [0.0, 0.0]]])
    marker = np.array([[[0.0, 1.0], [0.5, 1.0]], [[1.0, 1.0], [1.0, 1.0]]])
    share = marker_energy_share(maps, marker)
    assert share[0] == pytest.approx(3.0 / 4.0)  # negative mass is not energy; the half-covered pixel has none
    assert math.isnan(share[1])


def test_wilson_interval_of_a_share():
    low, high = binomial_interval(0.855, 200)  # 171 of 200
    z = 1.959963984540054
    p, n = 171 / 200, 200
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-9)


def test_a_failing_check_becomes_an_error_row_and_the_markdown_shows_every_row(tmp_path, monkeypatch):
    from benchbox.planted import validate

    def broken(ctx):
        raise RuntimeError("planted failure")

    monkeypatch.setitem(validate.RUNNERS, "leakage", broken)
    monkeypatch.setitem(validate.RUNNERS, "contrast", lambda ctx: [interval_row(
        "2b", "planted", "gap", {"value": -0.1, "ci_low": -0.2, "ci_high": -0.01}, expect_effect=True, sign=-1)])
    ctx = Context("smoke", "msfa", tmp_path, progress=False)
    rows = run_checks(ctx, ("leakage", "contrast"))
    assert [r.verdict for r in rows] == ["error", "pass"] and "planted failure" in rows[0].detail
    markdown = validation_markdown(rows, ctx, {"git": "abc"}, 12.0)
    assert "1 of 2 pass" in markdown and "-0.100 [-0.200, -0.0100]" in markdown and "⚠️ error" in markdown
