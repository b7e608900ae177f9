"""validation.md and validation.json: one row per planted truth, what benchbox measured, the
interval and the verdict."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path

from ..reports.boards import describe_code_version, format_number, markdown_table
from ..paths import atomic_write
from .validate import LEAKAGE_METHOD, PROFILES, Context, Row

VERDICT_MARK = {"pass": "✅ pass", "fail": "❌ fail", "error": "⚠️ error"}


def _estimate(row: Row) -> str:
    if not math.isfinite(row.value):
        return "—"
    if not (math.isfinite(row.ci_low) and math.isfinite(row.ci_high)):
        return format_number(row.value)
    return f"{format_number(row.value)} [{format_number(row.ci_low)}, {format_number(row.ci_high)}]"


def validation_markdown(rows: list[Row], ctx: Context, code: dict, elapsed_s: float) -> str:
    passed = sum(row.verdict == "pass" for row in rows)
    settings = PROFILES[ctx.profile]
    overrides = [f"{check}'s variants with {options}" for check, options in settings.get("synth_for", {}).items()]
    overrides += [f"{check}'s runs in the {profile} profile" for check, profile in settings.get("run_profile_for", {}).items()]
    header = markdown_table([
        ["profile", f"{ctx.profile} (the method's training profile; data: {settings['base_data']} and variants "
                    f"generated with {settings['synth']}" + "".join(f"; {o}" for o in overrides) + ")"],
        ["methods", f"{ctx.method} (checks 2b, 3, 4) and {LEAKAGE_METHOD} (check 1: deterministic, no training "
                    "noise between its two arms), training seed 0"],
        ["code version", describe_code_version(code)],
        ["created", datetime.now(timezone.utc).isoformat(timespec="seconds")],
        ["time", f"{elapsed_s:,.0f} s"],
        ["verdicts", f"{passed} of {len(rows)} pass"],
    ], ["", ""])
    table = markdown_table(
        [[row.check, row.planted, row.measured, _estimate(row), row.expected, VERDICT_MARK[row.verdict], row.detail]
         for row in rows],
        ["check", "planted truth", "what benchbox measured", "estimate [95% CI]", "expected", "verdict", "detail"])
    return "\n\n".join([
        "# benchbox validate: planted truths",
        "Each row plants a known effect in synthderm (or in simulated predictions) and runs the harness's own "
        "code on it: a check passes when benchbox finds the effect where it was planted and nothing where it "
        "was not. Intervals are lesion-clustered bootstrap intervals of one training seed (training noise not "
        "included), or Wilson intervals of a share of simulation replicates. Regenerate: "
        f"`benchbox validate --profile {ctx.profile}`; every run it made is in `{ctx.out}`.",
        header, table]) + "\n"


def write_validation(rows: list[Row], ctx: Context, code: dict, elapsed_s: float) -> Path:
    out = ctx.out / "validation.md"
    ctx.out.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: Path(tmp).write_text(validation_markdown(rows, ctx, code, elapsed_s)))
    record = {"profile": ctx.profile, "method": ctx.method, "code_version": code, "elapsed_s": elapsed_s,
              "rows": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in vars(r).items()}
                       for r in rows]}
    atomic_write(ctx.out / "validation.json", lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2) + "\n"))
    return out
