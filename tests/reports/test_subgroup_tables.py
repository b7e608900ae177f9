"""Subgroup tables by hand: name parsing, the worst group (recorded or derived), the spread and
detail tables' cells and marks, and the forest plot of group-vs-rest gaps."""

from __future__ import annotations

import math
from pathlib import Path

from benchbox.reports import plots
from benchbox.reports.runfolder import Job, Metric, Run
from benchbox.reports.subgroup_tables import (
    gap_is_significant,
    parse_heterogeneity,
    parse_subgroups,
    subgroup_attributes,
    subgroup_detail_table,
    subgroup_spread_table,
)


def test_parse_subgroups_splits_dotted_metric_and_dotted_group_names():
    m = Metric(0.1, 0.0, 0.2)
    metrics = {
        "binary.auc": m,
        "subgroup.age_band.binary.auc.30.0-45.0": m,
        "subgroup.age_band.binary.auc.gap.30.0-45.0": Metric(0.05, 0.01, 0.09),
        "subgroup.age_band.binary.auc.worst_gap": Metric(0.05, 0.01, 0.09),
        "subgroup.age_band.binary.auc.gap": Metric(0.2, 0.1, 0.3),  # an old max - min gap: ignored
        "subgroup.age_band.binary.heterogeneity_p": Metric(0.03),
        "subgroup.age_band.multiclass.heterogeneity_p": Metric(0.5),
        "subgroup.sex.mcc.female": m,
        "mcc": m,
    }
    parsed = parse_subgroups(metrics)
    age = parsed[("age_band", "binary.auc")]
    assert age.groups == ["30.0-45.0"] and age.gaps["30.0-45.0"].value == 0.05 and age.worst_gap.value == 0.05
    assert parsed[("sex", "mcc")].values == {"female": m}
    assert set(parsed) == {("age_band", "binary.auc"), ("sex", "mcc")}
    assert {k: v.value for k, v in parse_heterogeneity(metrics).items()} == {
        ("age_band", "binary"): 0.03, ("age_band", "multiclass"): 0.5}


def _gaps(**values: tuple[float, float, float]) -> dict[str, Metric]:
    return {f"subgroup.tone.binary.auc.gap.{g}": Metric(*v, n=40) for g, v in values.items()}


def _run(per_method: dict[str, dict[str, Metric]]) -> Run:
    jobs = [Job(method=m, seed=0, status="done", error=None, folder=Path(m), task="binary", metrics=metrics)
            for m, metrics in per_method.items()]
    return Run(folder=Path("run"), info={}, jobs=jobs, comparisons=[])


def test_worst_group_is_recorded_or_derived_in_the_metric_direction():
    group_values = {f"subgroup.tone.binary.auc.{g}": Metric(0.8, 0.7, 0.9, 40, True) for g in ("light", "dark", "mid")}
    gaps = _gaps(light=(0.04, -0.01, 0.09), dark=(-0.09, -0.15, -0.03), mid=(0.01, -0.05, 0.07))
    derived = parse_subgroups({**group_values, **gaps})[("tone", "binary.auc")]
    assert derived.worst("binary.auc") == ("dark", gaps["subgroup.tone.binary.auc.gap.dark"])
    recorded = Metric(0.01, -0.05, 0.07, 40, group="mid")  # the metrics.json "group" key
    parsed = parse_subgroups({**gaps, "subgroup.tone.binary.auc.worst_gap": recorded})[("tone", "binary.auc")]
    assert parsed.worst("binary.auc") == ("mid", recorded)
    # without the key, the group whose gap equals the worst gap
    parsed = parse_subgroups({**gaps, "subgroup.tone.binary.auc.worst_gap": Metric(-0.09, -0.15, -0.03)})
    assert parsed[("tone", "binary.auc")].worst("binary.auc")[0] == "dark"
    # lower-is-better metric: the highest gap
    ece = {"subgroup.tone.binary.ece.gap.light": Metric(-0.02), "subgroup.tone.binary.ece.gap.dark": Metric(0.03),
           "subgroup.tone.binary.ece.gap.mid": Metric(math.nan)}
    assert parse_subgroups(ece)[("tone", "binary.ece")].worst("binary.ece")[0] == "dark"


def test_spread_table_shows_worst_gap_with_group_mark_and_heterogeneity_p():
    a = {
        **_gaps(light=(0.04, -0.01, 0.09), dark=(-0.0792, -0.121, -0.0374)),
        "subgroup.tone.binary.auc.worst_gap": Metric(-0.0792, -0.121, -0.0374, 40),
        "subgroup.tone.binary.heterogeneity_p": Metric(0.0125, n=80),
        "subgroup.tone.multiclass.heterogeneity_p": Metric(math.nan, n=0, reason="fewer than two groups"),
    }
    b = {**_gaps(light=(0.01, -0.05, 0.07), dark=(-0.01, -0.07, 0.05)),
         "subgroup.tone.binary.heterogeneity_p": Metric(0.62, n=80)}  # an old run: no worst_gap entry
    lines = subgroup_spread_table(_run({"a": a, "b": b})).splitlines()
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines]
    assert rows[0] == ["attribute", "metric", "a", "b"]
    assert rows[2] == ["tone", "binary.auc", "-0.0792 [-0.121, -0.0374] (dark) *", "-0.0100 [-0.0700, 0.0500] (dark)"]
    assert rows[3] == ["tone", "binary.heterogeneity_p", "0.0125", "0.620"]
    assert rows[4] == ["tone", "multiclass.heterogeneity_p", "NaN (fewer than two groups)", "—"]
    assert subgroup_attributes(_run({"a": a})) == ["tone"]


def test_detail_table_marks_gaps_whose_ci_excludes_zero():
    metrics = {
        "subgroup.tone.binary.auc.light": Metric(0.85, 0.8, 0.9, 50, True),
        "subgroup.tone.binary.auc.dark": Metric(0.7, 0.6, 0.8, 30, True),
        "subgroup.tone.binary.auc.tiny": Metric(math.nan, n=5, reason="group 'tiny' has 5 images"),
        **_gaps(light=(0.15, 0.05, 0.25), dark=(-0.15, -0.25, 0.01)),
        "subgroup.tone.binary.auc.gap.tiny": Metric(math.nan, n=5, reason="group 'tiny' has 5 images"),
        "subgroup.tone.binary.auc.worst_gap": Metric(-0.15, -0.25, 0.01, 30),
    }
    table = subgroup_detail_table(_run({"a": metrics}), "tone")
    rows = {r[2]: r for r in ([c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines()[2:])}
    assert rows["light"][3:6] == ["50", "0.850 [0.800, 0.900]", "0.150 [0.0500, 0.250] *"]
    assert rows["dark"][5] == "-0.150 [-0.250, 0.0100]"  # the CI holds 0: no mark
    assert rows["tiny"][4:] == ["NaN", "NaN", "—", "group 'tiny' has 5 images"]  # no source-adjusted gap recorded
    assert set(rows) == {"light", "dark", "tiny"}  # worst_gap is no group
    assert gap_is_significant(Metric(0.1, 0.01, 0.2)) and not gap_is_significant(Metric(0.1))


def test_forest_plot_draws_every_group_gap(tmp_path):
    run = _run({"a": _gaps(light=(0.04, -0.01, 0.09), dark=(-0.09, -0.15, -0.03)),
                "b": {**_gaps(light=(0.01, -0.05, 0.07)), "subgroup.tone.binary.auc.gap.dark": Metric(math.nan)}})
    path = plots.forest(run, "tone", "binary.auc", tmp_path / "forest.png")
    assert path is not None and path.stat().st_size > 1000
    assert plots.forest(run, "sex", "binary.auc", tmp_path / "none.png") is None
