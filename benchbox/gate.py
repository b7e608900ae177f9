"""The CI regression gate: compare a run's gated metrics with a committed baseline.

A baseline (`write_baseline`) keeps, per method, every gated metric's per-seed values, so the
gate judges a drop against the seed-to-seed noise: a metric regresses only when the drop of its
mean over seeds exceeds the policy's minimum effect AND a one-sided Welch t-test on the per-seed
values says the drop is real. Metrics whose baseline sits at chance are "not gateable" (they
cannot regress visibly) and never fail. The baseline also records the run configuration, so
`benchbox gate --rerun` can run it again on any machine. The policy lives in metrics/gate.yaml.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from .metrics.paired import holm

from .errors import BenchboxError
from .reports.boards import format_number, markdown_table
from .reports.runfolder import Run, read_run
from .package_data import metrics_dir

DEFAULT_POLICY = metrics_dir() / "gate.yaml"  # $BENCHBOX_METRICS, else the policy shipped with benchbox
BASELINE_FORMAT = 2
# What defines the protocol: a difference makes the numbers not comparable.
PROTOCOL_FIELDS = ("dataset_hash", "split_hash", "profile", "seeds", "explain_n", "faithfulness", "deletion_steps")
# The RunConfig fields a rerun needs (out and device belong to the machine, not the run).
CONFIG_FIELDS = ("methods", "data", "split", "profile", "seeds", "explain_n", "faithfulness", "pretrained",
                 "weights_dir", "only_present", "on_bad_image", "ita_correction", "allow_leaky_split")
RULE_KEYS = {"abs", "ci", "chance", "degenerate"}


@dataclass(frozen=True)
class Rule:
    """How one gated metric is judged (metrics/gate.yaml documents each field)."""

    min_effect: float  # `abs`: the smallest drop of the mean over seeds that counts
    ci_units: float = 0.0  # `ci`: one-seed fallback only, in baseline CI half-widths
    chance: float | None = None  # None: gateable when the method's primary metric is
    degenerate: tuple[float, float] | None = None  # a baseline seed outside (low, high): not gateable


@dataclass
class Policy:
    alpha: float  # family-wise, Holm over every secondary gated metric of the run
    chance_margin: float  # in units of the metric's minimum effect
    primary: dict[str, str]  # task -> primary metric
    alpha_headline: float = 0.01  # per metric, unadjusted, for the headline metrics
    headline: tuple[str, ...] = ()  # metrics tested one by one at alpha_headline
    tasks: dict[str, list[tuple[str, Rule]]] = field(default_factory=dict)

    def rule(self, task: str | None, metric: str) -> Rule | None:
        """The first matching pattern's rule, or None when the metric is not gated."""
        return next((r for pattern, r in self.tasks.get(task or "", []) if fnmatch.fnmatchcase(metric, pattern)),
                    None)


@dataclass(frozen=True)
class Sample:
    """One metric of one method in one run: per-seed values and the mean per-seed CI half-width."""

    values: list[float]  # per seed, NaN where the seed gave none
    higher_is_better: bool = True
    half_width: float = math.nan

    @cached_property
    def finite(self) -> list[float]:
        return [float(v) for v in self.values if math.isfinite(v)]

    @property
    def n_nan(self) -> int:
        return len(self.values) - len(self.finite)

    @cached_property
    def mean(self) -> float:
        return math.fsum(self.finite) / len(self.finite) if self.finite else math.nan

    @cached_property
    def var(self) -> float:
        """The sample variance (ddof 1); NaN below two finite seeds."""
        if len(self.finite) < 2:
            return math.nan
        return math.fsum((v - self.mean) ** 2 for v in self.finite) / (len(self.finite) - 1)

    @property
    def sd(self) -> float:
        return math.sqrt(self.var)


@dataclass(frozen=True)
class Verdict:
    text: str
    failed: bool = False
    p: float | None = None  # the one-sided Welch p of a drop; None when no test was made
    delta: float = math.nan  # current mean - baseline mean
    min_effect: float = math.nan


def load_policy(path: str | Path = DEFAULT_POLICY) -> Policy:
    """Read metrics/gate.yaml: alpha, chance_margin, primary, defaults, chance, tasks."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise BenchboxError(f"gate policy {path} not found; pass --policy metrics/gate.yaml.") from None
    except yaml.YAMLError as error:
        raise BenchboxError(f"gate policy {path} is not valid YAML ({error}).") from None
    if not isinstance(data, dict):
        raise BenchboxError(f"gate policy {path} must be a mapping (alpha, defaults, tasks, ...).")
    defaults = data.get("defaults") or {}
    chance = data.get("chance") or {}
    policy = Policy(alpha=float(data.get("alpha", 0.05)), chance_margin=float(data.get("chance_margin", 2.0)),
                    primary=dict(data.get("primary") or {"multiclass": "balanced_accuracy", "binary": "binary.auc"}),
                    alpha_headline=float(data.get("alpha_headline", 0.01)),
                    headline=tuple(str(name) for name in data.get("headline") or ()))
    for key, value in (("alpha", policy.alpha), ("alpha_headline", policy.alpha_headline)):
        if not 0 < value < 1:
            raise BenchboxError(f"{path}: {key} must be between 0 and 1, not {value}.")
    for task, patterns in (data.get("tasks") or {}).items():
        policy.tasks[task] = []
        for pattern, settings in (patterns or {}).items():
            pattern = str(pattern)
            level = next((chance[key] for key in chance if fnmatch.fnmatchcase(pattern, key)), None)
            merged = {**defaults, "chance": level, **(settings or {})}
            unknown = set(merged) - RULE_KEYS
            if unknown:
                raise BenchboxError(f"{path}: {task}.{pattern} has unknown keys {sorted(unknown)}; "
                                    f"use {sorted(RULE_KEYS)}.")
            degenerate = merged.get("degenerate")
            policy.tasks[task].append((pattern, Rule(
                min_effect=float(merged.get("abs", 0.0)), ci_units=float(merged.get("ci", 0.0) or 0.0),
                chance=None if merged.get("chance") is None else float(merged["chance"]),
                degenerate=None if degenerate is None else (float(degenerate[0]), float(degenerate[1])))))
    if not policy.tasks:
        raise BenchboxError(f"{path} gates no metric; list metrics under `tasks:`.")
    return policy


def _plain(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _last_line(text: str | None) -> str:
    return ((text or "").strip().splitlines() or [""])[-1]


def summarise_run(run: Run, policy: Policy) -> dict[str, Any]:
    """The baseline shape of a run: configuration, protocol, environment and, per method, status
    and each gated metric's per-seed values. A method with any failed seed counts as failed."""
    info = run.info
    methods = {}
    for method in run.methods:
        failed = [job for job in run.jobs if job.method == method and job.status != "done"]
        task = run.task(method)
        metrics: dict[str, dict[str, Any]] = {}
        if not failed:
            for job in run.done_jobs(method):
                for name, metric in job.metrics.items():
                    if policy.rule(task, name) is None:
                        continue
                    if metric.higher_is_better is None:
                        raise BenchboxError(f"{run.folder}: {method} metric {name!r} has no higher_is_better; "
                                            "the gate needs a direction. Fix metrics.json or the policy.")
                    entry = metrics.setdefault(name, {"higher_is_better": metric.higher_is_better,
                                                      "values": {}, "ci_low": {}, "ci_high": {}})
                    seed = str(job.seed)
                    entry["values"][seed] = _plain(metric.value)
                    entry["ci_low"][seed] = _plain(metric.ci_low)
                    entry["ci_high"][seed] = _plain(metric.ci_high)
        methods[method] = {"task": task, "status": "failed" if failed else "done",
                           "error": _last_line(failed[0].error) if failed else None, "metrics": metrics}
    config = info.get("config") or {}
    evaluation = info.get("evaluation") or {}
    return {
        "benchbox_gate_baseline": BASELINE_FORMAT,
        "run_id": info.get("run_id"),
        "created": info.get("created"),
        "config": {key: config.get(key) for key in CONFIG_FIELDS if key in config},
        "protocol": {"dataset": (info.get("dataset") or {}).get("name"),
                     "dataset_hash": (info.get("dataset") or {}).get("hash"),
                     "split_hash": (info.get("split") or {}).get("hash"),
                     "profile": config.get("profile"),
                     "seeds": run.seeds,
                     "explain_n": evaluation.get("explain_n", config.get("explain_n")),
                     "faithfulness": config.get("faithfulness"),
                     "deletion_steps": evaluation.get("deletion_steps")},
        "code_version": info.get("code_version"),
        "libraries": info.get("libraries"),
        "hardware": info.get("hardware"),
        "methods": methods,
    }


def sample(entry: dict[str, Any] | None) -> Sample | None:
    """A baseline/summary metric entry as a Sample (seeds in numeric order)."""
    if entry is None:
        return None
    seeds = sorted(entry.get("values", {}), key=lambda s: int(s))
    values = [_number(entry["values"][s]) for s in seeds]
    low, high = entry.get("ci_low") or {}, entry.get("ci_high") or {}
    widths = [(_number(high.get(s)) - _number(low.get(s))) / 2 for s in seeds]
    finite = [w for w in widths if math.isfinite(w)]
    return Sample(values, bool(entry.get("higher_is_better", True)), sum(finite) / len(finite) if finite else math.nan)


def gateability(method: dict[str, Any], policy: Policy) -> dict[str, str | None]:
    """metric -> None when gateable, else why not; decided on the baseline alone.

    A metric with a chance level is gateable when its baseline mean beats chance by at least
    `chance_margin` x its minimum effect; one without is gateable when the method's primary
    metric is; a `degenerate` range also makes it not gateable when any baseline seed is outside."""
    task, entries = method.get("task"), method.get("metrics", {})
    reasons: dict[str, str | None] = {}

    def own(name: str) -> str | None:
        rule, values = policy.rule(task, name), sample(entries.get(name))
        if rule is None or values is None or rule.chance is None:
            return None
        mean = values.mean
        if not math.isfinite(mean):
            return None  # judged as NaN, not as chance
        above = mean - rule.chance if values.higher_is_better else rule.chance - mean
        needed = policy.chance_margin * rule.min_effect
        if above < needed:
            return (f"at chance: mean {format_number(mean)} within {format_number(needed)} of chance "
                    f"{format_number(rule.chance)}")
        return None

    primary = policy.primary.get(task or "")
    primary_reason = own(primary) if primary and primary in entries else (
        f"primary metric {primary} missing" if primary else "no primary metric for this task")
    for name in entries:
        rule = policy.rule(task, name)
        if rule is None:
            continue
        if rule.chance is not None:
            reasons[name] = own(name)
        elif primary_reason is not None:
            reasons[name] = f"{primary} not gateable"
        else:
            reasons[name] = None
        if reasons[name] is None and rule.degenerate is not None:
            low, high = rule.degenerate
            if any(v < low or v > high for v in sample(entries[name]).finite):
                reasons[name] = f"degenerate seed (outside {low:g}-{high:g})"
    return reasons


def welch_p(before: Sample, after: Sample) -> float:
    """One-sided Welch p that `after` is worse than `before` (in `before`'s direction): the p of
    scipy.stats.ttest_ind(after, before, equal_var=False, alternative="less" | "greater"),
    computed directly because the gate and its simulation make many thousands of these."""
    from scipy.special import stdtr

    n1, n2 = len(before.finite), len(after.finite)
    v1, v2 = before.var / n1, after.var / n2
    t = (after.mean - before.mean) / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    return float(stdtr(df, t if before.higher_is_better else -t))


def drop_p(before: Sample, after: Sample | None) -> float | None:
    """The one-sided Welch p of a drop, where judge would compute one (two or more seeds a side, not
    both constant); else None."""
    if after is None or len(before.finite) < 2 or len(after.finite) < 2:
        return None
    if max(before.finite) == min(before.finite) and max(after.finite) == min(after.finite):
        return None
    return welch_p(before, after)


def judge(before: Sample, after: Sample | None, rule: Rule, alpha: float, not_gateable: str | None = None,
          p_adjusted: float | None = None) -> Verdict:
    """The verdict on one gated metric: a regression needs a mean drop beyond the minimum effect
    AND a one-sided Welch p below alpha (zero variance on both sides: the drop alone decides;
    one seed on a side: no test, the drop must exceed max(abs, ci x baseline CI half-width))."""
    if not_gateable is not None:
        delta = after.mean - before.mean if after is not None else math.nan
        return Verdict(f"not gateable ({not_gateable})", delta=delta, min_effect=rule.min_effect)
    if after is None:
        return Verdict("FAIL: metric missing", True, min_effect=rule.min_effect)
    old, new = before.finite, after.finite
    if not old:
        return Verdict("ok (NaN in both)" if not new else "ok (was NaN)", min_effect=rule.min_effect)
    if not new or after.n_nan > before.n_nan:
        return Verdict("FAIL: now NaN", True, min_effect=rule.min_effect)
    delta = after.mean - before.mean
    drop = -delta if before.higher_is_better else delta
    if len(old) < 2 or len(new) < 2:
        allowed = rule.min_effect
        if math.isfinite(before.half_width):
            allowed = max(allowed, rule.ci_units * before.half_width)
        if drop > allowed + 1e-12:
            return Verdict("FAIL: regression (one seed: tolerance only)", True, None, delta, allowed)
        return Verdict("improved (one seed: tolerance only)" if -drop > allowed else "ok (one seed: tolerance only)",
                       False, None, delta, allowed)
    if max(old) == min(old) and max(new) == min(new):  # identical per-seed values on both sides
        p, note = (0.0 if drop > 0 else 1.0), " (zero variance: minimum effect alone)"
    else:
        p, note = (welch_p(before, after) if p_adjusted is None else p_adjusted), ""
    if drop > rule.min_effect + 1e-12:
        if p < alpha:
            return Verdict("FAIL: regression" + note, True, p, delta, rule.min_effect)
        return Verdict(f"ok (drop not significant, p >= {alpha:g})", False, p, delta, rule.min_effect)
    return Verdict("improved" if -drop > rule.min_effect else "ok", False, p, delta, rule.min_effect)


def _describe(values: Sample | None) -> str:
    if values is None:
        return "—"
    finite = values.finite
    if not finite:
        return f"NaN (n={len(values.values)})"
    spread = format_number(values.sd) if len(finite) > 1 else "—"
    nan = f", {values.n_nan} NaN" if values.n_nan else ""
    return f"{format_number(values.mean)} ± {spread} (n={len(finite)}{nan})"


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return "<0.001" if value < 0.001 else f"{value:.3f}"


HEADERS = ["method", "metric", "baseline mean ± sd (n)", "current mean ± sd (n)", "delta", "min effect", "p",
           "verdict"]


def compare(baseline: dict[str, Any], current: dict[str, Any], policy: Policy) -> tuple[list[list[str]], list[str]]:
    """Rows of the verdict table and the list of failures (empty: the metrics pass)."""
    rows, failures, checks, new_metrics = [], [], [], []

    def method_row(method: str, before: str, after: str, verdict: str) -> None:
        rows.append([method, "(method)", before, after, "", "", "", verdict])

    for method, before in baseline["methods"].items():
        after = current["methods"].get(method)
        if after is None:
            method_row(method, before["status"], "missing", "FAIL: method missing")
            failures.append(f"{method} is missing from the run")
            continue
        if after["status"] != "done":
            newly = before["status"] == "done"
            verdict = "FAIL: newly failed" if newly else "still failing (failed in the baseline too)"
            method_row(method, before["status"], f"failed: {after['error']}", verdict)
            if newly:
                failures.append(f"{method} newly failed: {after['error']}")
            continue
        if before["status"] != "done":
            method_row(method, "failed", "done", "ok (fixed; rewrite the baseline to gate it)")
            continue
        reasons = gateability(before, policy)
        for name, entry in before["metrics"].items():
            rule = policy.rule(before.get("task"), name)
            if rule is not None:
                checks.append((method, name, rule, sample(entry), sample(after["metrics"].get(name)), reasons.get(name)))
        for name, entry in after["metrics"].items():
            if name not in before["metrics"]:
                new_metrics.append([method, name, "—", _describe(sample(entry)), "", "", "", "new (not in baseline)"])
    # headline metrics are tested one by one; the others together, Holm-adjusted (multiplicity)
    secondary = [i for i, c in enumerate(checks) if c[1] not in policy.headline and c[5] is None
                 and drop_p(c[3], c[4]) is not None]
    adjusted = dict(zip(secondary, holm([drop_p(checks[i][3], checks[i][4]) for i in secondary])))
    for i, (method, name, rule, old, new, reason) in enumerate(checks):
        if name in policy.headline:
            verdict = judge(old, new, rule, policy.alpha_headline, reason)
        else:
            verdict = judge(old, new, rule, policy.alpha, reason, adjusted.get(i))
        delta = "" if not math.isfinite(verdict.delta) else ("+" if verdict.delta > 0 else "") + format_number(verdict.delta)
        rows.append([method, name, _describe(old), _describe(new), delta,
                     format_number(verdict.min_effect) if math.isfinite(verdict.min_effect) else "",
                     _p(verdict.p), verdict.text])
        if verdict.failed:
            failures.append(f"{method} {name}: {verdict.text}")
    rows += new_metrics
    for method, after in current["methods"].items():
        if method not in baseline["methods"]:
            method_row(method, "—", after["status"], "new method (not in baseline)")
    return rows, failures


def protocol_differences(baseline: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    before, after = baseline.get("protocol") or {}, current.get("protocol") or {}
    return [(key, before.get(key), after.get(key)) for key in PROTOCOL_FIELDS if before.get(key) != after.get(key)]


def environment_differences(baseline: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Library versions, hardware and code version that differ: printed, never fatal."""
    lines = []
    for section in ("code_version", "libraries", "hardware"):
        before, after = baseline.get(section) or {}, current.get(section) or {}
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                lines.append(f"{section}.{key}: {before.get(key)} → {after.get(key)}")
    return lines


def _short(value: Any) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return text[:12] + "…" if len(text) > 16 and " " not in text else text


def _protocol_line(protocol: dict[str, Any]) -> str:
    return ", ".join(f"{key} {_short(protocol.get(key))}" for key in ("dataset", *PROTOCOL_FIELDS))


def not_gateable_primaries(summary: dict[str, Any], policy: Policy) -> list[str]:
    """'method: metric (reason)' for every finished method whose primary metric is not gateable."""
    problems = []
    for method, entry in summary["methods"].items():
        if entry["status"] != "done":
            continue
        primary = policy.primary.get(entry.get("task") or "")
        if primary is None or primary not in entry["metrics"]:
            problems.append(f"{method}: {primary or 'primary metric'} (missing)")
            continue
        reason = gateability(entry, policy).get(primary)
        if reason is not None:
            problems.append(f"{method}: {primary} ({reason})")
    return problems


def write_baseline(run_dir: str | Path, out_path: str | Path, policy_path: str | Path = DEFAULT_POLICY,
                   allow_not_gateable: bool = False) -> Path:
    """Write the per-seed baseline JSON of a run (strict JSON: NaN as null). Refuses a baseline in
    which a finished method's primary metric is not gateable unless `allow_not_gateable`."""
    policy = load_policy(policy_path)
    summary = summarise_run(read_run(run_dir), policy)
    problems = not_gateable_primaries(summary, policy)
    if problems and not allow_not_gateable:
        raise BenchboxError("refusing to write a baseline in which the gate would be blind: the primary metric "
                            "of these methods is not gateable: " + "; ".join(problems)
                            + ". Fix the methods (or the run), or pass --allow-not-gateable.")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_suffix(out.suffix + ".tmp")
    temporary.write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
    temporary.replace(out)
    return out


def read_baseline(path: str | Path) -> dict[str, Any]:
    """A baseline of the current format; any other content is a BenchboxError naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchboxError(f"baseline {path} not found; write one with "
                            "`benchbox gate --run RUN_DIR --write-baseline FILE`.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BenchboxError(f"baseline {path} is not valid JSON ({error}).") from None
    if not isinstance(data, dict):
        raise BenchboxError(f"baseline {path} holds a JSON {type(data).__name__}, not a benchbox gate baseline "
                            "object; rewrite it with `benchbox gate --run RUN_DIR --write-baseline FILE`.")
    found = data.get("benchbox_gate_baseline")
    if found != BASELINE_FORMAT:
        what = f"an old-format baseline (format {found})" if isinstance(found, int) and found < BASELINE_FORMAT \
            else "not a benchbox gate baseline of this version"
        raise BenchboxError(f"baseline {path} is {what}; this benchbox needs format {BASELINE_FORMAT} (per-seed "
                            "values). Rewrite it with `benchbox gate --run RUN_DIR --write-baseline FILE`.")
    methods = data.get("methods")
    if not isinstance(methods, dict) or not all(isinstance(m, dict) and "status" in m and isinstance(m.get("metrics"), dict)
                                                for m in methods.values()):
        raise BenchboxError(f"baseline {path} has no valid `methods` mapping (method -> status, metrics); "
                            "rewrite it with --write-baseline.")
    return data


def rerun_config(baseline: dict[str, Any], out: str | Path | None = None, device: str = "auto"):
    """The RunConfig recorded in a baseline, writing to `out` (default reports/gate-rerun-<run id>)."""
    from .runner.config import RunConfig

    recorded = baseline.get("config") or {}
    if not recorded.get("methods"):
        raise BenchboxError("the baseline records no run configuration (config.methods); rewrite it with "
                            "--write-baseline from a run folder written by `benchbox run`.")
    config = RunConfig(**{key: recorded[key] for key in CONFIG_FIELDS if key in recorded}, device=device)
    config.out = str(out) if out else str(Path("reports") / f"gate-rerun-{config.run_id()}")
    return config


def gate_summary(baseline: dict[str, Any], current: dict[str, Any], policy: Policy, baseline_name: str,
                 policy_name: str, allow_protocol_change: bool = False) -> tuple[int, str]:
    """(exit code, markdown) of a current summary against a baseline."""
    changed = protocol_differences(baseline, current)
    rows, failures = compare(baseline, current, policy)
    not_comparable = bool(changed) and not allow_protocol_change
    status = "NOT COMPARABLE" if not_comparable else ("FAIL" if failures else "PASS")
    parts = [f"## benchbox gate: {status}"]
    header = (f"Run `{current.get('run_id')}` against baseline `{baseline.get('run_id')}` ({baseline_name}), "
              f"policy `{policy_name}` (regression: mean drop > min effect AND one-sided Welch p < {policy.alpha_headline:g} for "
              f"{', '.join(policy.headline) or 'no headline metric'}, Holm-adjusted p < {policy.alpha:g} for the rest).")
    if changed:
        listed = "; ".join(f"{key}: {_short(old)} → {_short(new)}" for key, old, new in changed)
        protocol = (f"**Protocol differs** ({listed})" +
                    (": compared anyway (--allow-protocol-change)." if allow_protocol_change else
                     ": NOT COMPARABLE. Rewrite the baseline with --write-baseline if the change is intended, "
                     "or pass --allow-protocol-change."))
    else:
        protocol = f"Protocol: same as the baseline ({_protocol_line(baseline.get('protocol') or {})})."
    environment = environment_differences(baseline, current)
    if environment:
        protocol += " Environment differs (not fatal): " + "; ".join(environment) + "."
    parts += [header, protocol, markdown_table(rows, HEADERS)]
    if failures:
        parts += ["Failures:\n" + "\n".join(f"- {failure}" for failure in failures)]
    return (1 if not_comparable or failures else 0), "\n\n".join(parts) + "\n"


def gate(baseline_path: str | Path, run_dir: str | Path, policy_path: str | Path = DEFAULT_POLICY,
         allow_protocol_change: bool = False) -> tuple[int, str]:
    """(exit code, markdown): 0 when no gated metric regresses and no baseline method is missing
    or newly failed; 1 otherwise, or when the protocol changed (unless allowed)."""
    policy = load_policy(policy_path)
    baseline = read_baseline(baseline_path)
    current = summarise_run(read_run(run_dir), policy)
    return gate_summary(baseline, current, policy, Path(baseline_path).name, Path(policy_path).name,
                        allow_protocol_change)
