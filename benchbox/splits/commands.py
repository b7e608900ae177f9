"""`benchbox split` (write a fixed, hashed, leak-free split manifest) and `benchbox audit` (check one)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from tabulate import tabulate

from ..data.commands import add_dataset_options
from ..errors import BenchboxError
from . import DEFAULT_FRACTIONS, SCHEMES, SPLITS, SYNTHDERM_FRACTIONS

if TYPE_CHECKING:
    import pandas as pd

DATA_HELP = "synthderm | synthderm:DIR | ham10000:DIR | isic2018:DIR | csv:FILE"


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help=DATA_HELP)
    add_dataset_options(parser)
    parser.add_argument(
        "--metadata-only",
        action="store_true",
        help="read only HAM10000_metadata.csv (ham10000:DIR or synthderm:DIR); images need not exist, "
        "so grouping is by lesion_id alone",
    )


def register(subparsers) -> None:
    split = subparsers.add_parser("split", help="write a fixed, hashed, leak-free train/val/test split manifest")
    _add_data_options(split)
    split.add_argument("--scheme", choices=(*SCHEMES, "image"), default="lesion",
                       help="lesion groups (default), ISIC 2018's own, or image: every image on its own, the leaky split "
                            "published methods used (to measure leakage with `benchbox audit --measure`, never to report)")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--folds", type=int, default=None, metavar="K", help="also divide train into K grouped folds")
    split.add_argument(
        "--fractions", type=float, nargs=3, default=None, metavar=("TRAIN", "VAL", "TEST"),
        help="default: those of the dataset's fixed split, 0.6 0.1 0.3 for the built-in synthderm, else 0.7 0.15 0.15"
    )
    split.add_argument(
        "--drop-leaking",
        action="store_true",
        help="with --scheme official: drop the val/test images whose lesion/near-duplicate group has images in an "
        "earlier official part (train > val > test; train is never dropped) instead of refusing the split; the "
        "split's json lists each dropped image and what it duplicates",
    )
    split.add_argument("--out", type=Path, default=None, help="CSV to write (default: <dataset>_<scheme>_seed<S>.csv)")
    split.set_defaults(func=run_split)

    audit = subparsers.add_parser(
        "audit", help="report lesion and near-duplicate overlap between splits (exit 1 when any) and class balance"
    )
    _add_data_options(audit)
    audit.add_argument("--split", required=True, type=Path, metavar="MANIFEST", help="split manifest CSV")
    audit.add_argument("--measure", metavar="METHOD",
                       help="also train METHOD on this (leaky) split and on its lesion-grouped twin, score both on the "
                            "same test images and report what the leak inflates, with paired intervals (exit 0 when "
                            "measured, 1 when a training run failed)")
    audit.add_argument("--profile", default="quick", help="with --measure: the training profile (default: quick)")
    audit.add_argument("--seeds", default="0", help="with --measure: comma-separated training seeds (default: 0)")
    audit.add_argument("--out", type=Path, default=None,
                       help="with --measure: folder for both runs (default: reports/audit-<split file name>-<METHOD>)")
    audit.set_defaults(func=run_audit)


def _load(args) -> tuple[str, pd.DataFrame, str, bool, tuple]:
    """(dataset name, manifest, dataset hash, restricted on purpose, fixed-split fractions) for the command's DATA."""
    from ..data.load import ensure_default_synthderm, load_dataset, parse_spec

    if not args.metadata_only:
        dataset = load_dataset(args.data, only_present=args.only_present, on_bad_image=args.on_bad_image)
        return dataset.name, dataset.manifest, dataset.hash, args.only_present, dataset.split_fractions or DEFAULT_FRACTIONS
    from ..data.ham10000 import metadata_manifest
    from ..data.manifest import manifest_hash

    if args.only_present:
        raise BenchboxError("--metadata-only reads no images, so --only-present does not apply; pass one of them.")
    kind, path = parse_spec(args.data)
    if kind not in ("ham10000", "synthderm"):
        raise BenchboxError(
            f"--metadata-only reads a HAM10000_metadata.csv: use ham10000:DIR or synthderm:DIR, not {args.data!r}."
        )
    manifest = metadata_manifest(path if path is not None else ensure_default_synthderm())
    return kind, manifest, manifest_hash(manifest), False, SYNTHDERM_FRACTIONS if path is None else DEFAULT_FRACTIONS


def _command_line(args, out: Path) -> str:
    """The command that regenerates this split, recorded in its json."""
    words = ["benchbox", "split", args.data, "--scheme", args.scheme, "--seed", str(args.seed)]
    if args.folds is not None:
        words += ["--folds", str(args.folds)]
    if args.drop_leaking:
        words.append("--drop-leaking")
    if args.fractions is not None:
        words += ["--fractions", *map(str, args.fractions)]
    if args.metadata_only:
        words.append("--metadata-only")
    if args.only_present:
        words.append("--only-present")
    if args.on_bad_image != "fail":
        words += ["--on-bad-image", args.on_bad_image]
    return shlex.join(words + ["--out", str(out)])


def _print_dropped(dropped: list[dict], json_name: str) -> None:
    """How many images --drop-leaking dropped, from which parts and why, in one line."""
    if not dropped:
        print("dropped: nothing (no lesion/near-duplicate group spans two official parts)")
        return
    parts = ", ".join(f"{part} {n}" for part in SPLITS if (n := sum(r["part"] == part for r in dropped)))
    print(
        f"dropped {len(dropped):,} leaking image(s) ({parts}): each duplicates an image of an earlier official "
        f"part (train > val > test); listed with what they duplicate in {json_name}"
    )


def run_split(args) -> int:
    from .audit import class_balance
    from .build import check_drop_leaking, make_split
    from .manifest import sidecar_paths, write_split

    check_drop_leaking(args.scheme, args.drop_leaking)  # before any image is read
    name, manifest, dataset_hash, _, fixed = _load(args)
    fractions = args.fractions or fixed
    if args.scheme == "image":
        if args.folds is not None:
            raise BenchboxError("--folds needs lesion groups; an image-level split has none (use --scheme lesion).")
        from .build import image_level_split

        table, info = image_level_split(manifest, args.seed, fractions)
    else:
        table, info = make_split(manifest, args.scheme, args.seed, fractions, args.folds, drop_leaking=args.drop_leaking)
    out = args.out or Path(f"{name}_{args.scheme}_seed{args.seed}.csv")
    info["command"] = _command_line(args, out)
    digest = write_split(table, out, info, name, dataset_hash)
    near = info["grouping"].get("near_duplicates", "not checked")
    if isinstance(near, dict):
        near = f"{near['pairs_across_lesion_ids']:,} pair(s) across lesion ids, merged"
    print(f"grouping: {info['grouping']['by']}; near-duplicates: {near}")
    if args.drop_leaking:
        _print_dropped(info["dropped_images"], sidecar_paths(out)[1].name)
    print(f"wrote {out}, {sidecar_paths(out)[0].name}, {sidecar_paths(out)[1].name}")
    print(f"sha256 {digest}")
    kept = table["split"].isin(SPLITS).to_numpy()  # dropped images are in no split
    table, labels = table[kept], manifest["dx"][kept]
    shares = class_balance(labels, table["split"])
    rows = [
        [
            split,
            int((table["split"] == split).sum()),
            table.loc[table["split"] == split, "group_id"].nunique(),
            100 * (table["split"] == split).mean(),
            (shares[split] - shares["all"]).abs().max(),
        ]
        for split in SPLITS
    ]
    headers = ["split", "images", "groups", "% images", "largest class-share gap (pp)"]
    print(tabulate(rows, headers=headers, tablefmt="github", floatfmt=".2f"))
    return 0


def run_audit(args) -> int:
    from .audit import audit_split, format_audit
    from .manifest import dropped_images, match_dataset, read_split

    name, manifest, dataset_hash, restricted, _ = _load(args)
    table, digest = read_split(args.split)
    matched, n_dropped = match_dataset(table, manifest, args.split, dataset_hash, restricted)
    audit = audit_split(manifest, matched, dropped=dropped_images(args.split))
    dropped = f"; dropped {n_dropped:,} split row(s) the restricted dataset lacks" if n_dropped else ""
    audit.checked[:0] = [
        "the split manifest's sha256 sidecar, columns and values: ok",
        f"every one of the dataset's {len(manifest):,} images is in the split{dropped}",
    ]
    print(f"audit of {args.split} (sha256 {digest}) on dataset {name}")
    print(format_audit(audit))
    if args.measure:
        return _measure(args)
    return 1 if audit.leaky else 0


def _measure(args) -> int:
    """`audit --measure`: the leaky split's inflation of each board's primary metric."""
    from ..planted.leakage import measure_inflation
    from ..runner.commands import parse_seeds
    from ..runner.config import RunConfig
    from ..runner.store import write_json

    out = args.out or Path("reports") / f"audit-{args.split.stem}-{args.measure}"
    config = RunConfig(methods=[args.measure], data=args.data, split=str(args.split), profile=args.profile,
                       seeds=parse_seeds(args.seeds), only_present=args.only_present, on_bad_image=args.on_bad_image)
    result = measure_inflation(config, out)
    write_json(out / "inflation.json", result)
    if result["failed"]:
        print(f"the {' and '.join(result['failed'])} run(s) failed; see their run.log in {out}")
        return 1
    rows = [[r["board"], r["metric"], r["value_a"], r["value_b"], f"{r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]",
             r["p_value"], r["n"]] for r in result["rows"]]
    print(f"\nwhat the leak inflates ({args.measure}, {args.profile} profile, seeds {args.seeds}; the grouped twin "
          f"moved {result['moved_images']:,} image(s) of groups that cross parts; both scored on the same test images):")
    print(tabulate(rows, headers=["board", "metric", "leaky", "grouped", "inflation [95% CI]", "p", "test images"],
                   tablefmt="github", floatfmt=".3f"))
    print(f"runs: {result['leaky_run']} and {result['grouped_run']}; numbers in {out / 'inflation.json'}")
    return 0
