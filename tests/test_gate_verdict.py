"""The gate's statistical verdict on synthetic per-seed values: noise alone does not fail, a real
drop does, small drops and at-chance baselines never fail, and a simulation of many gate checks
holds the false-alarm rate at 1% with the repository's policy while catching a planted drop."""

from __future__ import annotations

import json
import math

from pathlib import Path

import numpy as np
import pytest

from benchbox.gate import DEFAULT_POLICY, Rule, Sample, compare, gateability, judge, load_policy, welch_p

POLICY = load_policy(DEFAULT_POLICY)
AUC = Rule(min_effect=0.10, ci_units=0.5, chance=0.5)
SEED_SD = 0.03  # seed-to-seed sd of AUC-like metrics in the smoke and quick runs (assumed, see gate.yaml)


def draw(rng, mean, sd=SEED_SD, n=3):
    return list(rng.normal(mean, sd, n))


def test_equal_means_with_seed_noise_pass():
    before, after = Sample([0.80, 0.83, 0.77]), Sample([0.77, 0.80, 0.83])
    verdict = judge(before, after, AUC, POLICY.alpha)
    assert (verdict.text, verdict.failed) == ("ok", False)
    assert verdict.delta == pytest.approx(0.0) and verdict.p == pytest.approx(0.5)


def test_a_drop_of_0_2_with_seed_sd_0_03_fails():
    verdict = judge(Sample([0.80, 0.83, 0.77]), Sample([0.60, 0.63, 0.57]), AUC, POLICY.alpha)
    assert (verdict.text, verdict.failed) == ("FAIL: regression", True)
    assert verdict.delta == pytest.approx(-0.2) and verdict.p < 0.001


def test_a_drop_below_the_minimum_effect_passes_even_when_significant():
    rule = Rule(min_effect=0.25, chance=0.5)
    verdict = judge(Sample([0.80, 0.83, 0.77]), Sample([0.60, 0.63, 0.57]), rule, POLICY.alpha)
    assert (verdict.text, verdict.failed) == ("ok", False) and verdict.p < 0.001


def test_a_large_but_noisy_drop_is_not_significant():
    verdict = judge(Sample([0.95, 0.60, 0.85]), Sample([0.55, 0.90, 0.60]), AUC, POLICY.alpha)
    assert verdict.delta == pytest.approx(-0.35 / 3) and verdict.p > POLICY.alpha
    assert (verdict.text, verdict.failed) == ("ok (drop not significant, p >= 0.05)", False)


def test_direction_improvement_and_lower_is_better():
    ece = Rule(min_effect=0.05)
    worse = judge(Sample([0.10, 0.11, 0.09], higher_is_better=False), Sample([0.20, 0.21, 0.19], False), ece, 0.05)
    better = judge(Sample([0.20, 0.21, 0.19], higher_is_better=False), Sample([0.10, 0.11, 0.09], False), ece, 0.05)
    assert worse.text == "FAIL: regression" and (better.text, better.failed) == ("improved", False)
    assert judge(Sample([0.6, 0.62, 0.58]), Sample([0.8, 0.83, 0.77]), AUC, 0.05).text == "improved"


def test_zero_variance_on_both_sides_lets_the_minimum_effect_decide():
    drop = judge(Sample([0.8] * 3), Sample([0.6] * 3), AUC, 0.05)
    assert drop.failed and drop.text == "FAIL: regression (zero variance: minimum effect alone)" and drop.p == 0
    same = judge(Sample([0.8] * 3), Sample([0.8] * 3), AUC, 0.05)
    assert (same.text, same.failed) == ("ok", False)
    small = judge(Sample([0.8] * 3), Sample([0.75] * 3), AUC, 0.05)
    assert (small.text, small.failed) == ("ok", False)


def test_one_seed_falls_back_to_the_tolerance():
    before = Sample([0.80], half_width=0.3)  # ci 0.5 x 0.3 = 0.15 > abs 0.10
    assert judge(before, Sample([0.70]), AUC, 0.05).text == "ok (one seed: tolerance only)"
    failed = judge(before, Sample([0.60]), AUC, 0.05)
    assert (failed.text, failed.failed, failed.p) == ("FAIL: regression (one seed: tolerance only)", True, None)
    assert failed.min_effect == pytest.approx(0.15)
    assert judge(Sample([0.80]), Sample([0.65, 0.66, 0.64]), AUC, 0.05).failed  # no CI: abs alone


def test_nan_and_missing():
    assert judge(Sample([0.8, 0.8, 0.8]), Sample([0.8, math.nan, 0.8]), AUC, 0.05).text == "FAIL: now NaN"
    assert judge(Sample([0.8, 0.8, 0.8]), None, AUC, 0.05).text == "FAIL: metric missing"
    assert judge(Sample([math.nan] * 3), Sample([0.5] * 3), AUC, 0.05).text == "ok (was NaN)"


def entry(values, higher_is_better=True):
    return {"higher_is_better": higher_is_better, "values": {str(i): v for i, v in enumerate(values)},
            "ci_low": {}, "ci_high": {}}


def test_at_chance_baseline_is_not_gateable_and_never_fails():
    # binary.auc 0.62 is within 2 x 0.10 of chance 0.5: not gateable, and so is everything tied to it
    method = {"task": "binary", "status": "done", "metrics": {
        "binary.auc": entry([0.60, 0.62, 0.64]), "binary.sensitivity": entry([0.5, 0.6, 0.55]),
        "binary.ece": entry([0.1, 0.1, 0.1], higher_is_better=False)}}
    reasons = gateability(method, POLICY)
    assert reasons["binary.auc"].startswith("at chance: mean 0.62")
    assert reasons["binary.sensitivity"] == reasons["binary.ece"] == "binary.auc not gateable"
    collapsed = {"task": "binary", "status": "done", "metrics": {
        "binary.auc": entry([0.40, 0.41, 0.39]), "binary.sensitivity": entry([0.0, 0.0, 0.0]),
        "binary.ece": entry([0.4, 0.4, 0.4], higher_is_better=False)}}
    rows, failures = compare({"methods": {"m": method}}, {"methods": {"m": collapsed}}, POLICY)
    assert failures == []
    assert {row[1]: row[-1] for row in rows}["binary.auc"].startswith("not gateable (at chance")
    verdict = judge(Sample([0.51, 0.52, 0.50]), Sample([0.30, 0.31, 0.29]), AUC, 0.05, "at chance")
    assert (verdict.text, verdict.failed) == ("not gateable (at chance)", False)


def test_degenerate_sensitivity_seed_is_not_gateable():
    method = {"task": "binary", "status": "done", "metrics": {
        "binary.auc": entry([0.85, 0.86, 0.84]), "binary.sensitivity": entry([0.99, 0.7, 0.8]),
        "binary.specificity": entry([0.5, 0.6, 0.55])}}
    reasons = gateability(method, POLICY)
    assert reasons["binary.auc"] is None and reasons["binary.specificity"] is None
    assert reasons["binary.sensitivity"] == "degenerate seed (outside 0.02-0.98)"


# --- the false-alarm simulation ---------------------------------------------------------------
MULTICLASS = {"mcc": 0.5, "balanced_accuracy": 0.6, "f1_macro": 0.55, "auc_macro": 0.85, "binary.auc": 0.85,
              "binary.sensitivity": 0.7, "ece": 0.1, "xai.gradcam.iou_at_mask_area": 0.5,
              "xai.gaussian.iou_at_mask_area": 0.4}
BINARY = {"binary.auc": 0.85, "binary.sensitivity": 0.7, "binary.specificity": 0.7, "binary.ece": 0.1,
          "xai.gradcam.iou_at_mask_area": 0.5, "xai.gaussian.iou_at_mask_area": 0.4}
METHODS = {f"multiclass{i}": ("multiclass", MULTICLASS) for i in range(4)} | {
    f"binary{i}": ("binary", BINARY) for i in range(4)}


def _summary(rng, planted: tuple[str, str, float] | None = None) -> dict:
    """One run of 8 methods x 3 seeds; each metric's seed sd is its minimum effect / 3.33 (0.03 for
    the AUC-like metrics with abs 0.10: the policy sets `abs` at about 3.3 seed sds)."""
    methods = {}
    for method, (task, means) in METHODS.items():
        metrics = {}
        for name, mean in means.items():
            rule = POLICY.rule(task, name)
            lower = name.endswith("ece")
            shift = planted[2] if planted and planted[:2] == (method, name) else 0.0
            values = draw(rng, mean - shift, sd=rule.min_effect * SEED_SD / 0.10)
            metrics[name] = entry(values, higher_is_better=not lower)
        methods[method] = {"task": task, "status": "done", "error": None, "metrics": metrics}
    return {"methods": methods}


def test_false_alarm_simulation_with_the_repository_policy():
    rng = np.random.default_rng(11)
    checks = 1000
    gated = sum(len(means) for _, means in METHODS.values())
    false_alarms = caught = 0
    for _ in range(checks):
        baseline = _summary(rng)
        _, failures = compare(baseline, _summary(rng), POLICY)
        false_alarms += bool(failures)
        method = f"multiclass{rng.integers(4)}" if rng.random() < 0.5 else f"binary{rng.integers(4)}"
        _, failures = compare(baseline, _summary(rng, (method, "binary.auc", 0.2)), POLICY)
        caught += any(f.startswith(f"{method} binary.auc: FAIL") for f in failures)
    print(f"{checks} checks of {len(METHODS)} methods, {gated} gated metrics: false alarms "
          f"{false_alarms / checks:.1%}, planted drop of 0.2 caught {caught / checks:.1%}")
    assert gated == 60
    assert false_alarms / checks <= 0.01
    assert caught / checks >= 0.95


@pytest.mark.parametrize("before, after, higher", [
    ([0.80, 0.83, 0.77], [0.60, 0.63, 0.57], True), ([0.80, 0.83, 0.77], [0.79, 0.90, 0.71], True),
    ([0.10, 0.11, 0.09], [0.12, 0.30, 0.15, 0.2], False), ([0.5, 0.5, 0.51], [0.4, 0.45, 0.41], True)])
def test_welch_p_is_scipys_one_sided_welch_test(before, after, higher):
    from scipy import stats

    expected = stats.ttest_ind(after, before, equal_var=False, alternative="less" if higher else "greater").pvalue
    assert welch_p(Sample(before, higher), Sample(after, higher)) == pytest.approx(expected, rel=1e-9)


def test_false_alarms_with_the_seed_spread_measured_in_the_committed_baseline():
    """Unchanged code on another machine behaves like fresh seeds: draw both sides (3 seeds each)
    from normals with each gated metric's mean and seed sd in leaderboards/baselines/smoke.json."""
    baseline = json.loads((Path(__file__).resolve().parents[1] / "leaderboards" / "baselines" / "smoke.json").read_text())
    rng = np.random.default_rng(5)

    def fresh() -> dict:
        methods = {}
        for method, record in baseline["methods"].items():
            metrics = {}
            for name, stored in record["metrics"].items():
                values = [v for v in stored["values"].values() if v is not None]
                drawn = rng.normal(np.mean(values), np.std(values, ddof=1), len(values)) if len(values) > 1 else values
                metrics[name] = entry(list(drawn), higher_is_better=stored["higher_is_better"])
            methods[method] = {**record, "metrics": metrics}
        return {"methods": methods}

    checks = 300
    false_alarms = sum(bool(compare(fresh(), fresh(), POLICY)[1]) for _ in range(checks))
    print(f"{checks} unchanged gate checks at the measured seed spread: {false_alarms / checks:.1%} fail")
    assert false_alarms / checks <= 0.10
