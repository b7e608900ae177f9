"""The CI regression gate: compare a run's gated metrics with a committed baseline.

A baseline is a compact JSON written from a run (`write_baseline`): the protocol (dataset and
split hashes, profile, seeds) and, per method, its status and the metrics the policy gates.
The gate extracts the same from the new run and judges each metric with the policy's
tolerance in the metric's own direction. The policy format is documented in metrics/gate.yaml.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import BenchboxError
from .reports.boards import format_metric, format_number, markdown_table
from .reports.runfolder import Metric, Run, read_run

DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "metrics" / "gate.yaml"
BASELINE_FORMAT = 1
PROTOCOL_FIELDS = ("dataset_hash", "split_hash", "profile", "seeds")


@dataclass(frozen=True)
class Tolerance:
    """Allowed drop: the larger of `absolute` and `ci_units` baseline CI half-widths."""

    absolute: float
    ci_units: float

    def allowed_drop(self, baseline: Metric) -> float:
        return max(self.absolute, self.ci_units * baseline.half_width if baseline.has_ci else 0.0)


Policy = dict[str, list[tuple[str, Tolerance]]]  # task -> [(metric pattern, tolerance)]


def load_policy(path: str | Path = DEFAULT_POLICY) -> Policy:
    """Read metrics/gate.yaml (`defaults` + `tasks: {task: {pattern: {abs, ci}}}`)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise BenchboxError(f"gate policy {path} not found; pass --policy metrics/gate.yaml.") from None
    except yaml.YAMLError as error:
        raise BenchboxError(f"gate policy {path} is not valid YAML ({error}).") from None
    defaults = data.get("defaults") or {}
    policy: Policy = {}
    for task, patterns in (data.get("tasks") or {}).items():
        policy[task] = []
        for pattern, settings in (patterns or {}).items():
            merged = {**defaults, **(settings or {})}
            unknown = set(merged) - {"abs", "ci"}
            if unknown:
                raise BenchboxError(f"{path}: {task}.{pattern} has unknown keys {sorted(unknown)}; "
                                    "use abs and/or ci.")
            policy[task].append((str(pattern), Tolerance(float(merged.get("abs", 0.0)),
                                                         float(merged.get("ci", 0.0)))))
    if not policy:
        raise BenchboxError(f"{path} gates no metric; list metrics under `tasks:`.")
    return policy


def tolerance_for(policy: Policy, task: str | None, metric: str) -> Tolerance | None:
    """The first matching pattern's tolerance, or None when the metric is not gated."""
    return next((t for pattern, t in policy.get(task or "", []) if fnmatch.fnmatchcase(metric, pattern)),
                None)


def _plain(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _last_line(text: str | None) -> str:
    return ((text or "").strip().splitlines() or [""])[-1]


def summarise_run(run: Run, policy: Policy) -> dict[str, Any]:
    """The baseline shape of a run: protocol plus each method's status and gated metrics (means
    over seeds). A method with any failed seed counts as failed."""
    info = run.info
    methods = {}
    for method in run.methods:
        jobs = [job for job in run.jobs if job.method == method]
        failed = [job for job in jobs if job.status != "done"]
        task = run.task(method)
        metrics = {}
        if not failed:
            for name, metric in run.method_metrics(method).items():
                if tolerance_for(policy, task, name) is None:
                    continue
                if metric.higher_is_better is None:
                    raise BenchboxError(f"{run.folder}: {method} metric {name!r} has no higher_is_better; "
                                        "the gate needs a direction. Fix metrics.json or the policy.")
                metrics[name] = {"value": _plain(metric.value), "ci_low": _plain(metric.ci_low),
                                 "ci_high": _plain(metric.ci_high),
                                 "higher_is_better": metric.higher_is_better}
        methods[method] = {"task": task, "status": "failed" if failed else "done",
                           "error": _last_line(failed[0].error) if failed else None, "metrics": metrics}
    return {
        "benchbox_gate_baseline": BASELINE_FORMAT,
        "run_id": info.get("run_id"),
        "code_version": info.get("code_version"),
        "protocol": {"dataset": info.get("dataset", {}).get("name"),
                     "dataset_hash": info.get("dataset", {}).get("hash"),
                     "split_hash": info.get("split", {}).get("hash"),
                     "profile": info.get("config", {}).get("profile"),
                     "seeds": run.seeds},
        "methods": methods,
    }


def write_baseline(run_dir: str | Path, out_path: str | Path, policy_path: str | Path = DEFAULT_POLICY) -> Path:
    """Write the compact baseline JSON of a run (strict JSON: NaN as null)."""
    summary = summarise_run(read_run(run_dir), load_policy(policy_path))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_suffix(out.suffix + ".tmp")
    temporary.write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
    temporary.replace(out)
    return out


def read_baseline(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchboxError(f"baseline {path} not found; write one with "
                            "`benchbox gate --run RUN_DIR --write-baseline FILE`.") from None
    except json.JSONDecodeError as error:
        raise BenchboxError(f"baseline {path} is not valid JSON ({error}).") from None
    if data.get("benchbox_gate_baseline") != BASELINE_FORMAT:
        raise BenchboxError(f"{path} is not a benchbox gate baseline (format {BASELINE_FORMAT}); rewrite it "
                            "with --write-baseline.")
    return data


def _metric(entry: dict[str, Any] | None) -> Metric | None:
    if entry is None:
        return None
    number = lambda key: math.nan if entry.get(key) is None else float(entry[key])  # noqa: E731
    return Metric(value=number("value"), ci_low=number("ci_low"), ci_high=number("ci_high"),
                  higher_is_better=entry.get("higher_is_better"))


def judge_metric(baseline: Metric, current: Metric | None, tolerance: Tolerance) -> tuple[str, bool]:
    """(verdict, failed) for one gated metric."""
    if current is None:
        return "FAIL: metric missing", True
    if not math.isfinite(baseline.value):
        return ("ok (NaN in both)" if not math.isfinite(current.value) else "ok (was NaN)"), False
    if not math.isfinite(current.value):
        return "FAIL: now NaN", True
    change = current.value - baseline.value
    gain = change if baseline.higher_is_better else -change
    allowed = tolerance.allowed_drop(baseline)
    if gain < -allowed - 1e-12:
        return "FAIL: regression", True
    return ("improved" if gain > allowed else "ok"), False


def compare(baseline: dict[str, Any], current: dict[str, Any], policy: Policy) -> tuple[list[list[str]], list[str]]:
    """Rows of the verdict table and the list of failures (empty: the metrics pass)."""
    rows, failures = [], []
    for method, before in baseline["methods"].items():
        after = current["methods"].get(method)
        if after is None:
            rows.append([method, "(method)", before["status"], "missing", "", "", "FAIL: method missing"])
            failures.append(f"{method} is missing from the run")
            continue
        if after["status"] != "done":
            newly = before["status"] == "done"
            verdict = "FAIL: newly failed" if newly else "still failing (failed in the baseline too)"
            rows.append([method, "(method)", before["status"], f"failed: {after['error']}", "", "", verdict])
            if newly:
                failures.append(f"{method} newly failed: {after['error']}")
            continue
        if before["status"] != "done":
            rows.append([method, "(method)", "failed", "done", "", "", "ok (fixed; rewrite the baseline to gate it)"])
            continue
        for name, entry in before["metrics"].items():
            tolerance = tolerance_for(policy, after["task"], name)
            if tolerance is None:
                continue
            old, new = _metric(entry), _metric(after["metrics"].get(name))
            verdict, failed = judge_metric(old, new, tolerance)
            delta = new.value - old.value if new is not None else math.nan
            rows.append([method, name, format_metric(old), format_metric(new),
                         ("+" if delta > 0 else "") + format_number(delta), format_number(tolerance.allowed_drop(old)),
                         verdict])
            if failed:
                failures.append(f"{method} {name}: {verdict}")
        for name, entry in after["metrics"].items():
            if name not in before["metrics"]:
                rows.append([method, name, "—", format_metric(_metric(entry)), "", "", "new (not in baseline)"])
    for method, after in current["methods"].items():
        if method not in baseline["methods"]:
            rows.append([method, "(method)", "—", after["status"], "", "", "new method (not in baseline)"])
    return rows, failures


def protocol_differences(baseline: dict[str, Any], current: dict[str, Any]) -> list[list[str]]:
    before, after = baseline["protocol"], current["protocol"]
    return [[field, str(before.get(field)), str(after.get(field))]
            for field in PROTOCOL_FIELDS if before.get(field) != after.get(field)]


def gate(baseline_path: str | Path, run_dir: str | Path, policy_path: str | Path = DEFAULT_POLICY,
         allow_protocol_change: bool = False) -> tuple[int, str]:
    """(exit code, markdown): 0 when every gated metric holds within tolerance and no baseline
    method is missing or newly failed; 1 otherwise, or when the protocol changed (unless allowed)."""
    policy = load_policy(policy_path)
    baseline = read_baseline(baseline_path)
    current = summarise_run(read_run(run_dir), policy)
    changed = protocol_differences(baseline, current)
    rows, failures = compare(baseline, current, policy)
    not_comparable = bool(changed) and not allow_protocol_change
    status = "NOT COMPARABLE" if not_comparable else ("FAIL" if failures else "PASS")
    parts = [f"## benchbox gate: {status}",
             f"Run `{current.get('run_id')}` against baseline `{baseline.get('run_id')}` "
             f"({Path(baseline_path).name}), policy `{Path(policy_path).name}`."]
    if changed:
        parts += ["The protocol differs from the baseline's, so the numbers are not comparable"
                  + (" (compared anyway: --allow-protocol-change)." if allow_protocol_change else
                     ". Rewrite the baseline with --write-baseline if the change is intended, or pass "
                     "--allow-protocol-change."),
                  markdown_table(changed, ["protocol", "baseline", "current"])]
    parts.append(markdown_table(rows, ["method", "metric", "baseline", "current", "delta", "allowed drop",
                                       "verdict"]))
    if failures:
        parts += ["Failures:", "\n".join(f"- {failure}" for failure in failures)]
    return (1 if not_comparable or failures else 0), "\n\n".join(parts) + "\n"
