"""`benchbox data synth` and `benchbox data info`."""

from __future__ import annotations

import argparse
import json
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
        type=_artefact_correlation,
        default=None,
        metavar="S|JSON",
        help="plant a hair/ruler/ink association with malignancy: a number from 0 (none) to 1 (exactly the "
             "malignant images carry all three), or per-class probabilities as JSON, e.g. "
             "'{\"ink\": {\"mel\": 0.8, \"nv\": 0.1}}' (unnamed classes keep the base rate); default: none",
    )
    synth.add_argument(
        "--lesion-contrast",
        type=_lesion_contrast,
        default=None,
        metavar="graded|equal|FLOOR",
        help="lesion contrast by skin tone: graded = pigment fades to 0.5x on the darkest skin (ITA <= -40), "
             "equal = full contrast on every skin, a number in (0, 1] = that factor at ITA <= -40 "
             "(lower: a stronger skin-tone gap); default: graded, equal with --difficulty easy",
    )
    synth.add_argument(
        "--contrast-step",
        type=float,
        default=None,
        metavar="ITA",
        help="with a --lesion-contrast FLOOR: that factor on every skin with ITA <= this many degrees and full "
             "contrast above, instead of the ramp (benchbox validate's check 2b uses 28, the light/dark cut)",
    )
    synth.add_argument(
        "--ink-width",
        type=float,
        default=None,
        metavar="TIMES",
        help="the ink marker's stroke width as a multiple of the default 1.5-3 px at 128 px (benchbox validate's "
             "check 3 uses 3, a bold marker pen)",
    )
    synth.add_argument(
        "--artefact-masks",
        action="store_true",
        help="also write synthderm_ink_masks/<image_id>_ink.png (0/255) for every image with an ink marker",
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
            ("lesion_contrast", args.lesion_contrast),
            ("contrast_step_ita", args.contrast_step),
            ("ink_width", args.ink_width),
        )
        if value is not None
    }
    if args.artefact_masks:
        options["artefact_masks"] = True
    start = time.perf_counter()
    generate(args.out, seed=args.seed, **options)
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _artefact_correlation(text: str) -> float | dict:
    """A number, or a JSON object {artefact: {class: probability}}; generate checks the values."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise argparse.ArgumentTypeError(
            f"{text!r}: use a number in [0, 1] or JSON like '{{\"ink\": {{\"mel\": 0.8}}}}' "
            "(artefact -> class -> probability)"
        )
    return value


def _lesion_contrast(text: str) -> str | float:
    if text in ("graded", "equal"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use graded, equal or a number in (0, 1]") from None


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
