"""`benchbox gate`: the CI regression gate against a committed baseline, and baseline writing."""

from __future__ import annotations

import argparse

from .errors import BenchboxError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gate", help="fail (exit 1) when a run regresses against a baseline",
        description="Compare a run's gated metrics (metrics/gate.yaml) with a per-seed baseline and print a "
                    "markdown verdict table. A metric regresses when its mean over seeds drops by more than "
                    "its minimum effect AND a one-sided Welch t-test on the per-seed values says the drop is "
                    "real; metrics whose baseline is at chance are not gateable. Exit 1 on a regression, a "
                    "baseline method that is missing or newly failed, or a changed protocol unless "
                    "--allow-protocol-change; exit 2 on bad input.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", metavar="RUN_DIR", help="the run folder to judge")
    source.add_argument("--rerun", action="store_true",
                        help="run the configuration recorded in --baseline again, then judge that run")
    parser.add_argument("--baseline", metavar="FILE", help="baseline JSON to compare with")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="with --rerun: the run folder to write (default reports/gate-rerun-<run id>)")
    parser.add_argument("--quiet", action="store_true", help="with --rerun: no progress bars")
    parser.add_argument("--policy", metavar="FILE", default=None,
                        help="gate policy YAML (default: the repository's metrics/gate.yaml)")
    parser.add_argument("--allow-protocol-change", action="store_true",
                        help="compare even when the dataset/split hash, profile, seeds or explanation settings changed")
    parser.add_argument("--write-baseline", metavar="FILE",
                        help="write a baseline from --run (after gating, when --baseline is given too)")
    parser.add_argument("--allow-not-gateable", action="store_true",
                        help="write the baseline even when a method's primary metric is at chance")
    parser.set_defaults(func=handle_gate)


def handle_gate(args: argparse.Namespace) -> int:
    import contextlib
    import sys
    from pathlib import Path

    from .gate import DEFAULT_POLICY, gate, read_baseline, rerun_config, write_baseline

    policy = args.policy or DEFAULT_POLICY
    if args.out and not args.rerun:
        raise BenchboxError("--out only applies to --rerun.")
    if args.rerun:
        if not args.baseline:
            raise BenchboxError("--rerun needs --baseline FILE (the configuration to run again comes from it).")
        from .runner.run import execute

        config = rerun_config(read_baseline(args.baseline), args.out)
        print(f"benchbox gate: re-running the baseline's configuration into {config.run_dir()}", file=sys.stderr)
        with contextlib.redirect_stdout(sys.stderr):  # stdout stays the paste-able markdown
            execute(config, progress=not args.quiet)  # failed jobs are judged by the gate below
        run_dir = config.run_dir()
    elif args.run:
        run_dir = Path(args.run)
    else:
        raise BenchboxError("gate needs --run RUN_DIR or --rerun (with --baseline FILE).")
    if not args.baseline and not args.write_baseline:
        raise BenchboxError("gate needs --baseline FILE to compare with, or --write-baseline FILE.")
    code = 0
    if args.baseline:
        code, markdown = gate(args.baseline, run_dir, policy, args.allow_protocol_change)
        print(markdown)
    if args.write_baseline:
        written = write_baseline(run_dir, args.write_baseline, policy, args.allow_not_gateable)
        print(f"baseline written to {written}")
    return code
