"""`benchbox data synth` and `benchbox data info`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path



def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    """The options every command that loads a dataset shares."""
    parser.add_argument(
        "--only-present", action="store_true", help="use only the listed images that exist (default: refuse)"
    )
    parser.add_argument(
        "--on-bad-image", choices=("fail", "skip"), default="fail", help="what to do with an unreadable image"
    )


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="generate the built-in dataset or inspect one")
    commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    synth = commands.add_parser("synth", help="write a synthderm dataset in the HAM10000 layout")
    synth.add_argument("--out", required=True, type=Path, help="folder to create")
    synth.add_argument("--n-lesions", type=int, default=None, help="number of lesions (default: the built-in size)")
    synth.add_argument("--size", type=int, default=None, help="image side in pixels (default: the built-in size)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--artefact-correlation",
        type=float,
        default=None,
        metavar="S",
        help="plant a hair/ruler/ink association with malignancy, 0 (none) to 1 (exact); default: none",
    )
    synth.add_argument(
        "--difficulty",
        choices=("default", "easy"),
        default=None,
        help="easy: a clearly stronger class signal, for quick checks with tiny models (default: default)",
    )
    synth.set_defaults(func=run_synth)

    info = commands.add_parser("info", help="counts per class, lesion, source and skin tone, and what is missing")
    info.add_argument("data", help="synthderm | synthderm:DIR | ham10000:DIR | isic2018:DIR | csv:FILE")
    add_dataset_options(info)
    add_skin_tone_option(info)
    info.set_defaults(func=run_info)


def run_synth(args) -> int:
    from .synthderm import generate

    options = {
        key: value
        for key, value in (
            ("n_lesions", args.n_lesions),
            ("size", args.size),
            ("artefact_correlation", args.artefact_correlation),
            ("difficulty", args.difficulty),
        )
        if value is not None
    }
    start = time.perf_counter()
    generate(args.out, seed=args.seed, **options)
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def add_skin_tone_option(parser: argparse.ArgumentParser) -> None:
    """--ita-correction, for the commands whose output shows skin tones."""
    parser.add_argument(
        "--ita-correction", choices=("source", "image", "none"), default="source",
        help="colour correction before skin tone (ITA) is measured: source = per image source (default), "
             "image = plain per-image Shades of Gray (turns skin grey; for comparison), none = uncorrected "
             "(as papers that report ITA measured it); README, 'Data'",
    )


def run_info(args) -> int:
    from .info import describe
    from .load import load_dataset

    dataset = load_dataset(args.data, only_present=args.only_present, on_bad_image=args.on_bad_image,
                           ita_correction=args.ita_correction)
    print(describe(dataset))
    return 0
