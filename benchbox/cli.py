"""The `benchbox` command. Each command group lives in its own module with a `register(subparsers)`
function; this file only assembles them, so `benchbox ls` and `--help` never import torch."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_INTERRUPTED, BenchboxError

# Modules that add sub-commands. Each must keep heavy imports (torch) inside its handlers.
COMMAND_MODULES = (
    "benchbox.data.commands",
    "benchbox.splits.commands",
    "benchbox.methods.commands",
    "benchbox.runner.commands",
    "benchbox.reports.commands",
    "benchbox.gate_commands",
    "benchbox.score.commands",
    "benchbox.planted.commands",
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
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or 0)
    except BenchboxError as error:
        print(f"benchbox: error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:  # the environment (permissions, disk full), not a method failure
        where = f" ({error.filename})" if error.filename else ""
        print(f"benchbox: error: {error.strerror or error}{where}; check that the folder exists, is writable "
              "and has space", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except BrokenPipeError:  # e.g. `benchbox data info ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("benchbox: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
