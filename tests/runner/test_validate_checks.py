"""The end-to-end planted-truth checks of `benchbox validate`, called as functions on small data.

A tiny profile (120 lesions at 48 px, tiny_linear / colour_knn) runs each check's whole path in
seconds: these tests pin that every row is produced with a finite estimate and its interval, not
what the effect is (the committed leaderboards/validation.md measures that at full size).
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from benchbox.planted import validate
from benchbox.runner.store import read_json

TINY = {"synth": {"n_lesions": 120, "size": 48, "seed": 3, "difficulty": "easy"}, "power_replicates": 10, "explain_n": 8}


@pytest.fixture
def ctx(tmp_path, monkeypatch, tiny_synthderm):
    monkeypatch.setenv("BENCHBOX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(validate.PROFILES, "smoke", {**TINY, "base_data": f"synthderm:{tiny_synthderm}"})
    return validate.Context("smoke", "tiny_linear", tmp_path / "validation", progress=False)


def assert_measured(rows, n: int) -> None:
    assert len(rows) == n
    for row in rows:
        assert row.verdict in ("pass", "fail"), row
        assert math.isfinite(row.value) and row.ci_low <= row.value <= row.ci_high, row


def test_contrast_check_trains_on_the_step_plant_and_on_equal_contrast(ctx, monkeypatch):
    monkeypatch.setitem(validate.PROFILES["smoke"], "synth", {**TINY["synth"], "n_lesions": 700})  # >= 30 dark test images: a defined gap
    rows = validate.check_contrast(ctx)
    assert_measured(rows, 2)
    assert rows[0].planted == "lesion pigment faded to 0.05x on skin with ITA ≤ 28 (the dark group), 1x above"
    assert rows[0].expected == "interval below 0" and rows[1].planted == "equal lesion contrast on every skin tone"
    assert (ctx.out / "contrast" / "faded_on_dark_skin" / "tiny_linear" / "metrics.json").is_file()
    # both twins ran on one split, lesion-grouped, with CONTRAST_FRACTIONS' larger test part
    splits = {read_json(ctx.out / "contrast" / twin / "run.json")["split"]["hash"] for twin in ("equal", "faded_on_dark_skin")}
    assert len(splits) == 1
    table = pd.read_csv(ctx.out / "contrast" / "split.csv", dtype=str)
    assert table.groupby("group_id")["split"].nunique().max() == 1
    test_share = table.drop_duplicates("group_id")["split"].eq("test").mean()
    assert abs(test_share - validate.CONTRAST_FRACTIONS[2]) < 0.05


def test_a_check_can_run_in_another_profile(ctx, monkeypatch):
    """`run_profile_for` sets the run profile (recipe and evaluation) of one check's runs only."""
    monkeypatch.setitem(validate.PROFILES["smoke"], "run_profile_for", {"shortcut": "quick"})
    assert ctx.run_config("synthderm", ctx.out / "a", check="shortcut").profile == "quick"
    assert ctx.run_config("synthderm", ctx.out / "b", check="contrast").profile == "smoke"
    assert ctx.run_config("synthderm", ctx.out / "c").profile == "smoke"


def test_shortcut_check_gives_the_drop_on_both_boards_for_both_models_and_the_energy_row(ctx):
    rows = validate.check_shortcut(ctx)
    assert_measured(rows, 5)
    assert [row.check for row in rows].count("3 shortcut: drop on counterfactual test") == 4
    assert rows[-1].measured.startswith("saliency energy share on the marker, shortcut − clean model")


def test_leakage_check_measures_colour_knn_on_both_variants(ctx):
    rows = validate.check_leakage(ctx)
    assert_measured(rows, 4)
    single = [row for row in rows if row.planted.startswith("one image per lesion")]
    assert len(single) == 2 and all(row.value == 0 and row.verdict == "pass" for row in single)  # nothing to leak
