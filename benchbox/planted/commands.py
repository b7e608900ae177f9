"""`benchbox validate`: prove by planted truths that the harness finds what it claims to find."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    from .validate_names import CHECKS, DEFAULT_METHOD

    validate = subparsers.add_parser(
        "validate",
        help="plant leakage, subgroup gaps, shortcuts and hollow explanations in synthderm and check that "
             "benchbox finds them where planted and only there; writes validation.md",
    )
    validate.add_argument("--profile", choices=("smoke", "quick"), default="quick",
                          help="smoke: every code path in minutes (checks 1, 2b and 3 as quick runs them); quick "
                               "(default): the committed leaderboards/validation.md")
    validate.add_argument("--out", type=Path, default=None, help="folder for every run and validation.md "
                                                                 "(default: reports/validation-<profile>)")
    validate.add_argument("--method", default=DEFAULT_METHOD, help=f"the method trained by every check (default: {DEFAULT_METHOD})")
    validate.add_argument("--checks", default=",".join(CHECKS),
                          help=f"comma-separated subset of {','.join(CHECKS)} (default: all)")
    validate.add_argument("--quiet", action="store_true", help="no progress bars")
    validate.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    import time

    from ..runner.provenance import code_version
    from .report import write_validation
    from .validate import Context, run_checks

    started = time.perf_counter()
    ctx = Context(args.profile, args.method, args.out or Path("reports") / f"validation-{args.profile}", not args.quiet)
    checks = tuple(name.strip() for name in args.checks.split(",") if name.strip())
    rows = run_checks(ctx, checks)
    path = write_validation(rows, ctx, code_version(), time.perf_counter() - started)
    failed = [row for row in rows if row.verdict != "pass"]
    print(f"{len(rows) - len(failed)} of {len(rows)} planted-truth checks pass; wrote {path}")
    for row in failed:
        print(f"  {row.verdict}: {row.check}: {row.planted}: {row.measured} {row.detail}")
    return 1 if failed else 0
