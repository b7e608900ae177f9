"""`benchbox gate`: the CI regression gate against a committed baseline, and baseline writing."""

from __future__ import annotations

import argparse

from .errors import BenchboxError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gate", help="fail (exit 1) when a run regresses against a baseline",
        description="Compare a run's gated metrics (metrics/gate.yaml) with a baseline and print a "
                    "markdown verdict table. Exit 1 on a drop beyond tolerance, a baseline method "
                    "that is missing or newly failed, or a changed protocol (dataset/split hash, "
                    "profile, seeds) unless --allow-protocol-change.")
    parser.add_argument("--run", required=True, metavar="RUN_DIR", help="the run folder to judge")
    parser.add_argument("--baseline", metavar="FILE", help="baseline JSON to compare with")
    parser.add_argument("--policy", metavar="FILE", default=None,
                        help="gate policy YAML (default: the repository's metrics/gate.yaml)")
    parser.add_argument("--allow-protocol-change", action="store_true",
                        help="compare even when the dataset/split hash, profile or seeds changed")
    parser.add_argument("--write-baseline", metavar="FILE",
                        help="write a baseline from --run (after gating, when --baseline is given too)")
    parser.set_defaults(func=handle_gate)


def handle_gate(args: argparse.Namespace) -> int:
    from .gate import DEFAULT_POLICY, gate, write_baseline

    if not args.baseline and not args.write_baseline:
        raise BenchboxError("gate needs --baseline FILE to compare with, or --write-baseline FILE.")
    policy = args.policy or DEFAULT_POLICY
    code = 0
    if args.baseline:
        code, markdown = gate(args.baseline, args.run, policy, args.allow_protocol_change)
        print(markdown)
    if args.write_baseline:
        print(f"baseline written to {write_baseline(args.run, args.write_baseline, policy)}")
    return code
