"""`benchbox run`."""

from __future__ import annotations

import argparse

from ..data.commands import add_skin_tone_option
from ..errors import BenchboxError


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers like 0,1,2, not {text!r}") from None


def register(subparsers) -> None:
    run = subparsers.add_parser(
        "run",
        help="train, evaluate, explain and time methods on a fixed split; write a run folder and its report",
        description="With no options: every method, quick profile, built-in synthderm data, its fixed split.",
    )
    which = run.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true",
                       help="every registered method whose card does not say `default_run: false` (the default)")
    which.add_argument("--methods", help="comma-separated method names (see `benchbox ls`)")
    run.add_argument("--data", default="synthderm", help="synthderm | synthderm:DIR | ham10000:DIR | isic2018:DIR | csv:FILE")
    run.add_argument("--split", help="split manifest CSV (default: the dataset's fixed split)")
    run.add_argument("--profile", default="quick", help="smoke | quick | paper (default: quick)")
    run.add_argument("--seeds", type=parse_seeds, default=None,
                     help="comma-separated training seeds (default: 0,1,2 for quick and paper, 0 for smoke)")
    run.add_argument("--out", help="run folder (default: reports/<dataset>-<profile>-<config hash>)")
    run.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    run.add_argument("--explain-n", type=int, default=None,
                     help="test images with masks to explain (default: 8 in smoke, 32 in quick, 64 in paper)")
    run.add_argument("--faithfulness", default="fast", help="none | fast (deletion/insertion) | road (adds ROAD)")
    weights = run.add_mutually_exclusive_group()
    weights.add_argument("--no-pretrained", dest="pretrained", action="store_false", default=None,
                         help="train from scratch even in the paper profile")
    weights.add_argument("--pretrained", dest="pretrained", action="store_true",
                         help="load ImageNet weights in any profile")
    run.add_argument("--weights-dir", help="folder of local pretrained weights, looked at before any download")
    run.add_argument("--only-present", action="store_true", help="use only the listed images that exist")
    run.add_argument("--on-bad-image", choices=("fail", "skip"), default="fail")
    add_skin_tone_option(run)
    run.add_argument("--allow-leaky-split", action="store_true",
                     help="accept a --split whose lesions cross train/val/test (an image-level split), to measure "
                          "what leakage inflates; run.json and every board are stamped LEAKY (see `benchbox audit --measure`)")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local: one job after another in this process (default); ray: every (method, seed) job "
                          "as a task on a Ray cluster (pip install 'benchbox[ray]'; README, 'Running on a Ray cluster')")
    run.add_argument("--ray-address", help="the Ray cluster to join, e.g. HEAD_IP:6379 (default: $RAY_ADDRESS, "
                                           "else a cluster started on this machine, else a new local one)")
    run.add_argument("--ray-retries", type=int, default=2,
                     help="times a job whose Ray worker dies is run again before it is recorded as failed (default: 2)")
    run.add_argument("--quiet", action="store_true", help="no progress bars (with --executor ray: no per-job lines)")
    run.set_defaults(func=run_command)


def run_command(args) -> int:
    from ..registry import method_cards
    from .config import RunConfig
    from .run import execute

    if args.methods:
        methods = [name.strip() for name in args.methods.split(",") if name.strip()]
        if not methods:
            raise BenchboxError("--methods needs at least one name; see `benchbox ls`")
    else:
        cards = method_cards()
        methods = [name for name in cards.names() if cards.get(name).default_run]
    config = RunConfig(
        methods=methods, data=args.data, split=args.split, profile=args.profile, seeds=args.seeds,
        out=args.out, device=args.device, explain_n=args.explain_n, faithfulness=args.faithfulness,
        pretrained=args.pretrained, weights_dir=args.weights_dir, only_present=args.only_present,
        on_bad_image=args.on_bad_image, ita_correction=args.ita_correction, executor=args.executor, ray_address=args.ray_address,
        ray_retries=args.ray_retries, allow_leaky_split=args.allow_leaky_split,
    )
    return execute(config, progress=not args.quiet)
