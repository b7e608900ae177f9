"""Hand-worked cases for the table helpers: number format, marks, ordering, subgroup names."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from benchbox.reports.boards import (
    board_definitions,
    explanation_table,
    format_metric,
    format_number,
    is_better,
    leaderboard_table,
    sort_methods,
)
from benchbox.reports.runfolder import Job, Metric, Run


@pytest.mark.parametrize("value, text", [
    (0.7134, "0.713"), (0.0342, "0.0342"), (4.3, "4.30"), (11.52, "11.5"), (231.46, "231"),
    (1234.5, "1234"), (-0.00123, "-0.00123"), (0.0, "0"), (1.0, "1.00"), (0.99951, "1.00"),
    (0.0999, "0.0999"), (99.96, "100"), (math.nan, "NaN"),
])
def test_format_number_keeps_three_significant_digits(value, text):
    assert format_number(value) == text


def test_format_metric_shapes():
    assert format_metric(Metric(0.71, 0.66, 0.75)) == "0.710 [0.660, 0.750]"
    assert format_metric(Metric(11.7)) == "11.7"  # efficiency: no CI
    assert format_metric(Metric(0.5, reason="defined in only 182 of 200 resamples")) == "0.500 (no CI)"
    assert format_metric(Metric(math.nan, reason="one class in group")) == "NaN (one class in group)"
    assert format_metric(None) == "—"


@pytest.mark.parametrize("a, diff, higher, p_holm, method, expected", [
    ("x", 0.1, True, 0.01, "x", True),     # a better, significant
    ("x", 0.1, True, 0.01, "y", False),    # asking about b, which is worse
    ("y", -0.1, True, 0.01, "x", True),    # x listed as b with negative diff: x better
    ("x", 0.1, True, 0.2, "x", False),     # not significant after Holm
    ("x", 0.1, False, 0.01, "x", False),   # lower is better: a positive diff means x is worse
    ("x", -0.1, False, 0.01, "x", True),
    ("x", 0.0, True, 0.01, "y", False),    # no difference favours nobody
])
def test_is_better_respects_order_direction_and_holm(a, diff, higher, p_holm, method, expected):
    comparison = {"a": a, "b": "y" if a == "x" else "x", "diff": diff, "p_holm": p_holm}
    assert is_better(comparison, method, higher) is expected


def _run(values: dict[str, float], comparisons: list[dict], metric: str = "mcc", higher: bool = True) -> Run:
    jobs = [Job(method=m, seed=0, status="done", error=None, folder=Path(m), task="multiclass",
                metrics={metric: Metric(v, v - 0.05, v + 0.05, 100, higher)}) for m, v in values.items()]
    return Run(folder=Path("run"), info={}, jobs=jobs, comparisons=comparisons)


def test_sort_puts_nan_last_and_follows_direction():
    per_method = {"a": {"ece": Metric(0.2, higher_is_better=False)}, "b": {"ece": Metric(math.nan)},
                  "c": {"ece": Metric(0.1, higher_is_better=False)}, "d": {}}
    assert sort_methods(per_method, "ece") == ["c", "a", "b", "d"]


def test_no_mark_when_the_significant_difference_favours_the_lower_row():
    # comparisons.json can disagree with the point estimates (e.g. a per-seed test): no mark then
    comparisons = [{"board": "multiclass", "metric": "mcc", "a": "top", "b": "second", "diff": -0.02,
                    "p_holm": 0.01, "test": "paired_bootstrap"},
                   {"board": "multiclass", "metric": "mcc", "a": "third", "b": "second", "diff": -0.3,
                    "p_holm": 0.0001, "test": "paired_bootstrap"}]
    board = next(b for b in board_definitions() if b.name == "multiclass")
    table = leaderboard_table(_run({"top": 0.5, "second": 0.45, "third": 0.1}, comparisons), board)
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    assert [r[1].strip() for r in rows] == ["top", "second", "third"]
    assert [r[-1].strip() for r in rows] == ["0.010", "<0.001 †", ""]


def test_ranks_are_shared_where_the_paired_tests_do_not_separate_methods():
    # a beats c and d; b beats d; nothing else is significant
    names = ["a", "b", "c", "d"]
    significant = {("a", "c"), ("a", "d"), ("b", "d")}
    comparisons = [{"board": "binary", "metric": "binary.auc", "a": x, "b": y, "diff": 0.05,
                    "p_holm": 0.001 if (x, y) in significant else 0.4, "test": "seed-aware t"}
                   for i, x in enumerate(names) for y in names[i + 1:]]
    board = next(b for b in board_definitions() if b.name == "binary")
    table = leaderboard_table(_run({"a": 0.8, "b": 0.75, "c": 0.7, "d": 0.6}, comparisons, "binary.auc"), board)
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines()[2:]]
    assert [(r[0], r[1]) for r in rows] == [("1–2", "a"), ("1–3", "b"), ("2–4", "c"), ("3–4", "d")]
    header = [c.strip() for c in table.splitlines()[0].split("|")[1:-1]]
    assert len(header) - 2 <= 7  # at most seven columns besides rank and method


def test_a_method_that_beats_every_other_ranks_alone():
    comparisons = [{"board": "binary", "metric": "binary.auc", "a": "a", "b": other, "diff": 0.2, "p_holm": 0.001}
                   for other in ("b", "c")]
    comparisons.append({"board": "binary", "metric": "binary.auc", "a": "b", "b": "c", "diff": 0.01, "p_holm": 0.9})
    board = next(b for b in board_definitions() if b.name == "binary")
    table = leaderboard_table(_run({"a": 0.9, "b": 0.7, "c": 0.69}, comparisons, "binary.auc"), board)
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == ["1", "2–3", "2–3"]


def test_a_collapsed_operating_point_is_marked_and_explained(tmp_path):
    from runfolder_builder import BINARY_THRESHOLD, build_run

    from benchbox.reports.runfolder import read_run

    run_dir = build_run(tmp_path, methods=("msfa", "recall_ensemble", "xception"), failed=())
    path = run_dir / "recall_ensemble" / "seed0" / "predictions.csv"
    frame = pd.read_csv(path)
    test = frame["split"] == "test"
    frame.loc[test, "p_malignant"] = BINARY_THRESHOLD + 0.5 * (1 - BINARY_THRESHOLD)  # every test image called malignant
    frame["p_benign"] = 1 - frame["p_malignant"]
    frame.to_csv(path, index=False)
    board = next(b for b in board_definitions() if b.name == "binary")
    text = leaderboard_table(read_run(run_dir), board)
    names = [line.split("|")[2].strip() for line in text.split("\n\n")[0].splitlines()[2:]]
    assert sorted(names) == ["msfa", "recall_ensemble ⚠", "xception"]
    notes = text.split("\n\n")[1:]
    assert len(notes) == 1 and notes[0].startswith(
        "⚠ recall_ensemble, seed 0: degenerate operating point: the validation threshold 0.400 puts 100% of test "
        "images at or above it (sensitivity 1.00, specificity 0.00)")


def test_explanation_table_shows_the_randomisation_check_lower_is_better(tmp_path):
    # the direction comes from metrics/suites.yaml, as the runner writes it into metrics.json
    from benchbox.metrics.config import higher_is_better

    assert higher_is_better("xai.gradcam.mprt_spearman") is False and higher_is_better("xai.gradcam.mprt_ssim") is False
    metrics = {
        "xai.gradcam.iou": Metric(0.4, 0.3, 0.5, 8, True),
        "xai.gradcam.mprt_ssim": Metric(0.1, 0.05, 0.15, 8, False),
        "xai.gradcam.mprt_spearman": Metric(0.12, 0.02, 0.2, 8, False),
        "xai.smoothgrad.mprt_spearman": Metric(0.71, 0.6, 0.8, 8, False),
        "xai.gaussian.iou": Metric(0.3, 0.2, 0.4, 8, True),
    }
    jobs = [Job(method="m", seed=0, status="done", error=None, folder=tmp_path / "m" / "seed0", task="binary", metrics=metrics)]
    lines = explanation_table(Run(folder=tmp_path, info={}, jobs=jobs, comparisons=[])).splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0] == ["method", "explainer", "iou ↑", "mprt_spearman ↓", "mprt_ssim ↓"]  # preferred order
    assert cells[2] == ["m", "gradcam", "0.400 [0.300, 0.500]", "0.120 [0.0200, 0.200]", "0.100 [0.0500, 0.150]"]
    assert cells[3][3] == "0.710 [0.600, 0.800] fails sanity check (> 0.5)" and cells[3][4] == "—"
    assert cells[4] == ["m", "gaussian (baseline)", "0.300 [0.200, 0.400]", "n/a (no model)", "n/a (no model)"]
