"""The `benchbox` command. Each command group lives in its own module with a `register(subparsers)`
function; this file only assembles them, so `benchbox ls` and `--help` never import torch."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import BenchboxError

# Modules that add sub-commands. Each must keep heavy imports (torch) inside its handlers.
COMMAND_MODULES = (
    "benchbox.data.commands",
    "benchbox.splits.commands",
    "benchbox.methods.commands",
    "benchbox.runner.commands",
    "benchbox.reports.commands",
    "benchbox.gate_commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchbox",
        description="Leak-free benchmarking of dermoscopic skin-lesion classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"benchbox {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BenchboxError as error:
        print(f"benchbox: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `benchbox data info ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("benchbox: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
