"""The rendered report, parsed back: every number in its tables must equal metrics.json (read here
with json, not with the reader under test), the boards must be ordered and marked correctly."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from runfolder_builder import DATASET_HASH, FAILED_METHOD, METHODS, SPLIT_HASH, build_run, write_cards

from benchbox.reports.render import render_report

SUITES = yaml.safe_load((Path(__file__).resolve().parents[2] / "metrics" / "suites.yaml").read_text())
NUMBER = r"-?\d+(?:\.\d+)?"
CELL = re.compile(rf"^(NaN|{NUMBER})(?: \[({NUMBER}), ({NUMBER})\])?(.*)$")
# Columns that hold numbers which are not metric values.
NOT_METRICS = {"rank", "n", "vs next (Holm p)", "threads", "input", "claimed", "measured - claimed",
               "the paper's metric, where", "the paper's number", "value", "where"}  # claims: the paper's text


def report_text(report: Path) -> str:
    """README.md followed by the subgroups.md it links to."""
    readme = report.read_text()
    assert "[subgroups.md](subgroups.md)" in readme
    return readme + "\n" + (report.parent / "subgroups.md").read_text()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("report")
    run_dir = build_run(root)
    report = render_report(run_dir, root / "out", registry_dir=write_cards(root / "registry"))
    return run_dir, report_text(report)


def metrics_json(run_dir: Path, seeds=(0,)) -> dict[str, dict]:
    """Per method: metric name -> entry, averaged over seeds with numpy (independent of benchbox)."""
    result = {}
    for method in METHODS:
        if len(seeds) > 1:  # the method-level file pools the seeds
            pooled = json.loads((run_dir / method / "metrics.json").read_text())["metrics"]
            result[method] = {name: {key: entry[key] for key in ("value", "ci_low", "ci_high", "reason")}
                              for name, entry in pooled.items()}
            continue
        per_seed = [json.loads((run_dir / method / f"seed{s}" / "metrics.json").read_text())["metrics"]
                    for s in seeds]
        result[method] = {}
        for name, entry in per_seed[0].items():
            result[method][name] = {
                key: (None if entry[key] is None else float(np.mean([p[name][key] for p in per_seed])))
                for key in ("value", "ci_low", "ci_high")} | {"reason": entry["reason"]}
    return result


def tables(markdown: str) -> list[tuple[list[str], list[str], list[dict[str, str]]]]:
    """Every markdown table as (headings above it, header cells, rows as dicts keyed by header)."""
    found, headings, lines = [], [], markdown.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("#"):
            level = len(lines[i]) - len(lines[i].lstrip("#"))
            headings = headings[: level - 1] + [lines[i].lstrip("# ").strip()]
        if lines[i].startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append([c.strip() for c in re.split(r"(?<!\\)\|", lines[i])[1:-1]])
                i += 1
            header, rows = block[0], block[2:]
            found.append((list(headings), header, [dict(zip(header, r)) for r in rows]))
            continue
        i += 1
    return found


def close(shown: float, true: float) -> bool:
    """Equal at the three significant digits the report prints."""
    return abs(shown - true) <= 5e-3 * abs(true) + 1e-12


def check_cell(cell: str, entry: dict, where: str) -> str:
    """Assert that `cell` shows `entry`; return the text after the number (marks, reasons)."""
    match = CELL.match(cell)
    assert match, f"{where}: {cell!r} is not a metric cell"
    value, low, high, rest = match.groups()
    missing = lambda x: x is None or math.isnan(x)  # noqa: E731  (JSON null or NaN)
    if missing(entry["value"]):
        assert value == "NaN", where
        return rest
    assert close(float(value), entry["value"]), f"{where}: {value} != {entry['value']}"
    if missing(entry["ci_low"]):
        assert low is None, f"{where}: CI shown but none in metrics.json"
    else:
        assert low is not None and close(float(low), entry["ci_low"]) and close(float(high), entry["ci_high"]), \
            f"{where}: CI {low}, {high} != {entry['ci_low']}, {entry['ci_high']}"
    return rest


def metric_for(headings: list[str], header: list[str], row: dict[str, str], column: str) -> tuple[str, str] | None:
    """(method, metric name) that a table cell claims to show, or None for non-metric cells."""
    name = column.replace("↑", "").replace("↓", "").strip()
    section = headings[1] if len(headings) > 1 else ""
    if "explainer" in header:
        explainer = row["explainer"].replace(" (baseline)", "")
        return row["method"], f"xai.{explainer}.{name}"
    if "group" in header:
        attribute = headings[-1].removeprefix("By ")
        suffix = {"value": "", "gap vs rest": "gap.", "source-adjusted gap": "adjusted_gap."}.get(column)
        if suffix is None:
            return None
        return row["method"], f"subgroup.{attribute}.{row['metric']}.{suffix}{row['group']}"
    if "attribute" in header:
        suffix = "" if row["metric"].endswith(".heterogeneity_p") else ".worst_gap"
        return column, f"subgroup.{row['attribute']}.{row['metric']}{suffix}"
    if section == "Claimed vs measured":
        return (headings[-1], row["claim"]) if column == "measured" else None
    if "method" in header and column != "method":
        return row["method"], name
    return None


def check_all_numbers(markdown: str, expected: dict[str, dict]) -> int:
    checked = 0
    for headings, header, rows in tables(markdown):
        if header == ["", ""] or "error (last line; see error.txt)" in header:
            continue  # the run header and the failures table hold no metrics
        for row in rows:
            for column, cell in row.items():
                if column in NOT_METRICS or column in ("method", "explainer", "group", "metric", "attribute",
                                                       "device", "claim", "note"):
                    continue
                target = metric_for(headings, header, row, column)
                assert target is not None, f"unexplained column {column!r} in {headings}"
                method, name = target
                if cell in ("—", "not measured under this name"):
                    assert name not in expected.get(method, {}), f"{method} {name} is in metrics.json but not shown"
                    continue
                check_cell(cell, expected[method][name], f"{headings[-1]} / {method} / {name}")
                checked += 1
    return checked


def test_every_number_in_the_report_equals_metrics_json(rendered):
    run_dir, markdown = rendered
    expected = metrics_json(run_dir)
    checked = check_all_numbers(markdown, expected)
    # boards: 5 x 7 binary + 3 x 7 seven-class, per-class 3 x 7, calibration, efficiency, xai, subgroups...
    assert checked > 35 + 21 + 21 + 30 + 60


def test_boards_hold_the_right_methods_sorted_by_primary_metric(rendered):
    run_dir, markdown = rendered
    expected = metrics_json(run_dir)
    titles = {name: board["title"] for name, board in SUITES["boards"].items()}
    boards = {headings[-1]: rows for headings, header, rows in tables(markdown) if "vs next (Holm p)" in header}
    assert list(boards) == [titles["binary"], titles["multiclass"]]  # the board of every method first
    binary, seven = boards[titles["binary"]], boards[titles["multiclass"]]
    assert {r["method"] for r in binary} == set(METHODS)  # the failed method is on no board
    assert {r["method"] for r in seven} == {m for m, spec in METHODS.items() if spec[0] == "multiclass"}
    for rows, primary in ((binary, "binary.auc"), (seven, "mcc")):
        values = [expected[r["method"]][primary]["value"] for r in rows]
        assert values == sorted(values, reverse=True)
        low_high = [tuple(int(x) for x in r["rank"].split("–")) * (2 if "–" not in r["rank"] else 1)
                    for r in rows]
        assert all(low <= position <= high for position, (low, high) in enumerate(low_high, 1))


def check_marks(markdown: str, comparisons: list[dict]) -> list[bool]:
    """Assert each board row's "vs next" cell against comparisons.json; return the expected marks."""
    marks = []
    for headings, header, rows in tables(markdown):
        if "vs next (Holm p)" not in header:
            continue
        board = next(name for name, spec in SUITES["boards"].items() if spec["title"] == headings[-1])
        primary = SUITES["boards"][board]["primary"]
        for upper, lower in zip(rows, rows[1:]):
            entries = [c for c in comparisons if c["board"] == board and c["metric"] == primary
                       and {c["a"], c["b"]} == {upper["method"], lower["method"]}]
            assert entries
            expected_mark = all(c["p_holm"] < 0.05 and (c["diff"] > 0) == (c["a"] == upper["method"])
                                for c in entries)
            assert upper["vs next (Holm p)"].endswith("†") == expected_mark
            shown_p, largest = upper["vs next (Holm p)"].rstrip(" †"), max(c["p_holm"] for c in entries)
            assert shown_p == "<0.001" if largest < 0.001 else float(shown_p) == pytest.approx(largest)
            marks.append(expected_mark)
        assert rows[-1]["vs next (Holm p)"] == ""
    return marks


def test_better_than_next_mark_follows_holm_corrected_comparisons(rendered):
    run_dir, markdown = rendered
    marks = check_marks(markdown, json.loads((run_dir / "comparisons.json").read_text()))
    assert True in marks and False in marks  # the fixture exercises both cases


def test_subgroup_rows_mark_significant_gaps_and_give_nan_reasons(rendered):
    run_dir, markdown = rendered
    expected = metrics_json(run_dir)
    significant, nan_rows = [], 0
    for headings, header, rows in tables(markdown):
        if "group" not in header:
            continue
        attribute = headings[-1].removeprefix("By ")
        for row in rows:
            gap = expected[row["method"]][f"subgroup.{attribute}.{row['metric']}.gap.{row['group']}"]
            if gap["value"] is None:
                nan_rows += 1
                assert row["gap vs rest"] == "NaN" and row["note"] == gap["reason"]
                continue
            excludes_zero = gap["ci_low"] > 0 or gap["ci_high"] < 0
            assert row["gap vs rest"].endswith(" *") == excludes_zero
            significant.append(excludes_zero)
    assert nan_rows == len(METHODS)  # the small "other" sex group, once per method
    assert True in significant and False in significant


def test_claims_sit_beside_measurements_with_both_protocols(rendered):
    run_dir, markdown = rendered
    accuracy = metrics_json(run_dir)["msfa"]["accuracy"]["value"]
    claims = {headings[-1]: rows for headings, header, rows in tables(markdown) if "claim" in header}
    msfa = {r["claim"]: r for r in claims["msfa"]}
    assert float(msfa["accuracy"]["claimed"]) == 0.788
    assert close(float(msfa["accuracy"]["measured - claimed"]), accuracy - 0.788)
    assert claims["recall_ensemble"][1]["note"] == "at t=0.46"
    assert claims["recall_ensemble"][2]["measured"] == "not measured under this name"
    section = markdown.split("### msfa", 1)[1]
    assert "paper's protocol: dataset: HAM10000, split: random image-level 80/20, input_size: 224" in section
    assert "this run: dataset: synthderm (2000 images), split: synthderm.csv, sha256 5f1d00000000" in section
    assert "input size: 64 px" in section


def test_header_failures_and_plots(rendered):
    run_dir, markdown = rendered
    header = dict(line.strip("| ").split(" | ", 1) for line in markdown.split("\n\n")[2].splitlines()[2:])
    header = {key.strip(): value.strip() for key, value in header.items()}
    assert header["dataset"] == f"synthderm (2000 images, sha256 {DATASET_HASH[:12]})"
    assert header["split"] == f"splits/synthderm.csv (sha256 {SPLIT_HASH[:12]})"
    assert (header["profile"], header["seeds"]) == ("quick", "0")
    assert header["code version"] == "v0.1.0-3-gabc1234-dirty, sources sha256 9e8d22222222"
    assert header["hardware"] == "machine: x86_64, cpu_count: 2, torch_threads: 2, device: cpu"
    failures = next(rows for _, h, rows in tables(markdown) if "error (last line; see error.txt)" in h)
    assert [(r["method"], r["error (last line; see error.txt)"]) for r in failures] == [
        (FAILED_METHOD, "RuntimeError: CUDA out of memory (planted)")]
    out = run_dir.parent / "out"
    linked = re.findall(r"!\[[^\]]*\]\((plots/[^)]+\.png)\)", markdown)
    expected = {"plots/roc_binary.png", "plots/roc_multiclass.png", "plots/reliability.png", "plots/confusion.png",
                "plots/forest_light_dark_binary_auc.png", "plots/forest_sex_binary_auc.png",
                *[f"plots/saliency_{m}.png" for m in METHODS]}
    assert set(linked) == expected
    for relative in linked:
        with Image.open(out / relative) as image:
            assert image.format == "PNG" and min(image.size) > 200
    assert json.loads((out / "run.json").read_text()) == json.loads((run_dir / "run.json").read_text())


def test_several_seeds_show_means_and_say_so(tmp_path):
    run_dir = build_run(tmp_path, seeds=(0, 1))
    markdown = report_text(render_report(run_dir, registry_dir=tmp_path / "no-cards"))
    assert (run_dir / "report" / "README.md").exists()
    assert "means over training seeds 0, 1" in markdown and "seed-aware" in markdown
    expected = metrics_json(run_dir, seeds=(0, 1))
    single = metrics_json(run_dir, seeds=(0,))
    assert check_all_numbers(markdown, expected) > 100
    check_marks(markdown, json.loads((run_dir / "comparisons.json").read_text()))
    # the mean really differs from seed 0 alone, so the check above distinguishes them
    assert not math.isclose(expected["msfa"]["mcc"]["value"], single["msfa"]["mcc"]["value"], rel_tol=1e-2)
    assert "Claimed vs measured" not in markdown


def test_rerender_replaces_stale_plots(tmp_path):
    run_dir = build_run(tmp_path, methods=("msfa",), failed=())
    stale = run_dir / "report" / "plots" / "saliency_gone.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    render_report(run_dir, registry_dir=tmp_path / "no-cards")
    assert not stale.exists()
    assert (run_dir / "report" / "plots" / "saliency_msfa.png").exists()
