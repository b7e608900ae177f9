"""`benchbox score`."""

from __future__ import annotations


def register(subparsers) -> None:
    score = subparsers.add_parser(
        "score",
        help="score a model trained elsewhere from its predictions file, as one more entry of a run folder",
        description="Reads the ISIC 2018 Task 3 submission CSV (image,MEL,NV,BCC,AKIEC,BKL,DF,VASC), "
                    "benchbox's predictions.csv, or a binary CSV (image,malignant); scores its test rows on "
                    "the split's test part with every metric, interval, subgroup and comparison a hosted "
                    "method gets, and renders the report.",
    )
    score.add_argument("predictions", help="the predictions CSV")
    score.add_argument("--data", required=True, help="the dataset the predictions are of (as for `benchbox run`)")
    score.add_argument("--split", help="split manifest (default: the dataset's fixed split, or the --out run's)")
    score.add_argument("--name", help="the entry's name on the boards (default: the file's name)")
    score.add_argument("--out", help="run folder to add the entry to, e.g. an earlier `benchbox run`'s "
                                     "(default: reports/<dataset>-score-<name>)")
    score.add_argument("--val", help="validation predictions (same layouts) for the binary operating point; "
                                     "default: the val rows of a benchbox predictions.csv, else 0.5")
    score.add_argument("--allow-subset", action="store_true",
                       help="score a file that lacks some test images (recorded in the run folder)")
    score.add_argument("--quiet", action="store_true", help="no progress bars")
    score.set_defaults(func=score_command)


def score_command(args) -> int:
    from .run_entry import add_entry

    add_entry(args.predictions, data=args.data, split=args.split, name=args.name, out=args.out, val=args.val,
              allow_subset=args.allow_subset, progress=not args.quiet)
    return 0
