"""Confounding tables: chi-squared and Cramér's V worked by hand on a 2x2 and a 2x3 table, equality
with scipy, missing values left out and counted, the one-row reason, a copy (V = 1) and an
independent balanced table (V = 0), and the per-attribute tables with malignant shares."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2, chi2_contingency
from scipy.stats.contingency import association as scipy_association

from benchbox.errors import BenchboxError
from benchbox.metrics.confounding import association, confounding_tables


def arrays_from_table(rows, columns, counts):
    """Per-image (row value, column value) object arrays holding `counts[i][j]` images of (rows[i], columns[j])."""
    pairs = [(r, c) for i, r in enumerate(rows) for j, c in enumerate(columns) for _ in range(counts[i][j])]
    order = np.random.default_rng(0).permutation(len(pairs))  # the order of the images must not matter
    values = np.array([pairs[k][0] for k in order], dtype=object)
    other = np.array([pairs[k][1] for k in order], dtype=object)
    return values, other


def test_hand_worked_2x2():
    values, other = arrays_from_table(["dark", "light"], ["a", "b"], [[10, 20], [30, 40]])
    out = association(values, other, name="ita_light_dark", other_name="source")
    # n = 100; row sums 30, 70; column sums 40, 60; expected = row * column / n: 12, 18 / 28, 42
    # chi2 = 2^2/12 + 2^2/18 + 2^2/28 + 2^2/42 = 0.33333 + 0.22222 + 0.14286 + 0.09524 = 0.79365
    expected_chi2 = 4 / 12 + 4 / 18 + 4 / 28 + 4 / 42
    # V = sqrt(chi2 / (n (min(2, 2) - 1))) = sqrt(0.0079365) = 0.08909; 1 degree of freedom
    assert out["cramers_v"] == pytest.approx(math.sqrt(expected_chi2 / 100), abs=1e-12)
    assert out["cramers_v"] == pytest.approx(0.0890871, abs=1e-6)
    assert out["chi2_p"] == pytest.approx(chi2.sf(expected_chi2, 1), abs=1e-12)
    assert out["rows"] == ["dark", "light"] and out["columns"] == ["a", "b"]
    assert out["counts"] == [[10, 20], [30, 40]]
    assert (out["n"], out["n_missing"], out["reason"]) == (100, 0, None)


def test_hand_worked_2x3():
    values, other = arrays_from_table(["dark", "light"], ["a", "b", "c"], [[5, 15, 40], [20, 10, 10]])
    out = association(values, other)
    # n = 100; row sums 60, 40; column sums 25, 25, 50; expected 15, 15, 30 / 10, 10, 20
    # chi2 = 10^2/15 + 0 + 10^2/30 + 10^2/10 + 0 + 10^2/20 = 6.667 + 3.333 + 10 + 5 = 25
    # V = sqrt(25 / (100 * (min(2, 3) - 1))) = 0.5; 2 degrees of freedom: p = exp(-25 / 2)
    assert out["cramers_v"] == pytest.approx(0.5, abs=1e-12)
    assert out["chi2_p"] == pytest.approx(math.exp(-12.5), rel=1e-9)
    assert out["counts"] == [[5, 15, 40], [20, 10, 10]]


def test_equals_scipy_on_a_random_table():
    rng = np.random.default_rng(3)
    values = rng.choice(["0-29", "30-44", "45-59", "75+"], size=500).astype(object)
    other = rng.choice(["rosendahl", "vidir_modern", "vidir_molemax"], size=500).astype(object)
    out = association(values, other)
    table = np.array(out["counts"])
    assert table.shape == (4, 3) and table.sum() == 500
    assert out["cramers_v"] == pytest.approx(scipy_association(table, method="cramer"), abs=1e-12)
    assert out["chi2_p"] == pytest.approx(chi2_contingency(table, correction=False).pvalue, abs=1e-12)
    # and the table is the cross-tabulation of the inputs
    for i, r in enumerate(out["rows"]):
        for j, c in enumerate(out["columns"]):
            assert table[i, j] == np.sum((values == r) & (other == c))


def test_missing_values_are_left_out_and_counted():
    values, other = arrays_from_table(["dark", "light"], ["a", "b"], [[10, 20], [30, 40]])
    values = np.r_[values, ["unknown", None, "dark", np.nan]].astype(object)
    other = np.r_[other, ["a", "b", "", "a"]].astype(object)  # "" is missing too
    out = association(values, other)
    assert (out["n"], out["n_missing"]) == (100, 4)
    assert out["rows"] == ["dark", "light"]  # "unknown" forms no row
    assert out["counts"] == [[10, 20], [30, 40]]
    assert out["cramers_v"] == pytest.approx(math.sqrt((4 / 12 + 4 / 18 + 4 / 28 + 4 / 42) / 100), abs=1e-12)


def test_a_single_column_or_row_gives_nan_and_a_reason():
    values = np.array(["dark", "light", "dark", "unknown"], dtype=object)
    out = association(values, np.array(["x", "x", "x", "y"], dtype=object), name="ita_light_dark", other_name="source")
    assert math.isnan(out["cramers_v"]) and math.isnan(out["chi2_p"])
    assert out["reason"] == "only one source ('x') among the images with a known ita_light_dark"
    assert (out["n"], out["n_missing"], out["counts"]) == (3, 1, [[2], [1]])
    out = association(np.array(["dark"] * 3, dtype=object), np.array(["x", "y", "y"], dtype=object),
                      name="ita_light_dark", other_name="source")
    assert out["reason"] == "only one ita_light_dark ('dark') among the images with a known source"
    out = association(np.array(["unknown"], dtype=object), np.array(["x"], dtype=object),
                      name="sex", other_name="source")
    assert out["reason"] == "no image has both a known sex and a known source"
    assert (out["n"], out["n_missing"], out["rows"], out["counts"]) == (0, 1, [], [])


def test_a_copy_of_the_source_has_v_one_and_a_balanced_table_v_zero():
    rng = np.random.default_rng(4)
    source = rng.choice(["rosendahl", "vidir_modern", "vienna_dias"], size=300).astype(object)
    copy = association(source.copy(), source)
    assert copy["cramers_v"] == pytest.approx(1.0, abs=1e-12)
    assert copy["chi2_p"] < 1e-100
    # independent by construction: every (group, source) cell holds 25 images, so chi2 = 0
    values, other = arrays_from_table(["dark", "light"], ["a", "b", "c"], [[25, 25, 25], [25, 25, 25]])
    independent = association(values, other)
    assert independent["cramers_v"] == pytest.approx(0.0, abs=1e-12)
    assert independent["chi2_p"] == pytest.approx(1.0, abs=1e-12)


def test_mismatched_lengths_are_refused():
    with pytest.raises(BenchboxError, match="3 and 2 values"):
        association(np.array(["a", "b", "a"], dtype=object), np.array(["x", "y"], dtype=object))


def test_confounding_tables_per_attribute():
    source = np.array(["a", "a", "a", "b", "b", "b", "b", "b"], dtype=object)
    dx = np.array(["mel", "nv", "nv", "mel", "bcc", "nv", "nv", "nv"], dtype=object)
    malignant = np.array([1, 0, 0, 1, 1, 0, 0, 0])
    sex = np.array(["male", "male", "female", "female", "female", "unknown", "male", "male"], dtype=object)
    tables = confounding_tables({"sex": sex, "source": source}, source, dx, malignant)
    assert set(tables) == {"sex", "source"}
    assert tables["sex"]["source"] == association(sex, source, name="sex", other_name="source")
    assert tables["sex"]["class"] == association(sex, dx, name="sex", other_name="class")
    # rows female, male; columns a, b: female = images 2 (a), 3 (b), 4 (b); male = 0 (a), 1 (a), 6 (b), 7 (b)
    assert tables["sex"]["source"]["counts"] == [[1, 2], [2, 2]]
    # female: images 2, 3, 4 -> malignant 0, 1, 1; male: images 0, 1, 6, 7 -> 1, 0, 0, 0; "unknown" is no group
    assert tables["sex"]["malignant_share"] == pytest.approx({"female": 2 / 3, "male": 1 / 4})
    assert tables["source"]["source"] is None  # the source against itself says nothing
    assert tables["source"]["class"]["rows"] == ["a", "b"]
    assert tables["source"]["class"]["columns"] == ["bcc", "mel", "nv"]
    assert tables["source"]["malignant_share"] == pytest.approx({"a": 1 / 3, "b": 2 / 5})
    with pytest.raises(BenchboxError, match="attribute 'sex' has 3 values"):
        confounding_tables({"sex": sex[:3]}, source, dx, malignant)
