"""`benchbox report RUN_DIR [--out DIR]`: render a run folder's markdown report and plots."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="render markdown leaderboards and plots from a run folder",
        description="Render a run folder into README.md (leaderboards, per-class, calibration, "
                    "efficiency, explanation, subgroup, segmentation and claimed-vs-measured tables) "
                    "and plots/*.png. Reads only the run folder, never a model.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `benchbox run`")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where to write the report (default: RUN_DIR/report)")
    parser.set_defaults(func=handle_report)


def handle_report(args: argparse.Namespace) -> int:
    from .render import render_report

    path = render_report(args.run_dir, args.out)
    print(f"report written to {path}")
    return 0
