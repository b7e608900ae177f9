"""`benchbox split` (write a fixed, hashed, leak-free split manifest) and `benchbox audit` (check one)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from tabulate import tabulate

from ..data.commands import add_dataset_options
from ..errors import BenchboxError
from . import DEFAULT_FRACTIONS, SCHEMES, SPLITS

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
    split.add_argument("--scheme", choices=SCHEMES, default="lesion", help="lesion groups (default) or ISIC 2018's own")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--folds", type=int, default=None, metavar="K", help="also divide train into K grouped folds")
    split.add_argument(
        "--fractions", type=float, nargs=3, default=DEFAULT_FRACTIONS, metavar=("TRAIN", "VAL", "TEST")
    )
    split.add_argument("--out", type=Path, default=None, help="CSV to write (default: <dataset>_<scheme>_seed<S>.csv)")
    split.set_defaults(func=run_split)

    audit = subparsers.add_parser(
        "audit", help="report lesion and near-duplicate overlap between splits (exit 1 when any) and class balance"
    )
    _add_data_options(audit)
    audit.add_argument("--split", required=True, type=Path, metavar="MANIFEST", help="split manifest CSV")
    audit.set_defaults(func=run_audit)


def _load(args) -> tuple[str, pd.DataFrame, str, bool]:
    """(dataset name, manifest, dataset hash, restricted on purpose) for the command's DATA."""
    from ..data.load import ensure_default_synthderm, load_dataset, parse_spec

    if not args.metadata_only:
        dataset = load_dataset(args.data, only_present=args.only_present, on_bad_image=args.on_bad_image)
        return dataset.name, dataset.manifest, dataset.hash, args.only_present
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
    return kind, manifest, manifest_hash(manifest), False


def _command_line(args, out: Path) -> str:
    """The command that regenerates this split, recorded in its json."""
    words = ["benchbox", "split", args.data, "--scheme", args.scheme, "--seed", str(args.seed)]
    if args.folds is not None:
        words += ["--folds", str(args.folds)]
    if tuple(args.fractions) != DEFAULT_FRACTIONS:
        words += ["--fractions", *map(str, args.fractions)]
    if args.metadata_only:
        words.append("--metadata-only")
    if args.only_present:
        words.append("--only-present")
    if args.on_bad_image != "fail":
        words += ["--on-bad-image", args.on_bad_image]
    return shlex.join(words + ["--out", str(out)])


def run_split(args) -> int:
    from .audit import class_balance
    from .build import make_split
    from .manifest import sidecar_paths, write_split

    name, manifest, dataset_hash, _ = _load(args)
    table, info = make_split(manifest, args.scheme, args.seed, args.fractions, args.folds)
    out = args.out or Path(f"{name}_{args.scheme}_seed{args.seed}.csv")
    info["command"] = _command_line(args, out)
    digest = write_split(table, out, info, name, dataset_hash)
    near = info["grouping"]["near_duplicates"]
    if isinstance(near, dict):
        near = f"{near['pairs_across_lesion_ids']:,} pair(s) across lesion ids, merged"
    print(f"grouping: {info['grouping']['by']}; near-duplicates: {near}")
    print(f"wrote {out}, {sidecar_paths(out)[0].name}, {sidecar_paths(out)[1].name}")
    print(f"sha256 {digest}")
    shares = class_balance(manifest["dx"], table["split"])
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
    from .manifest import match_dataset, read_split

    name, manifest, dataset_hash, restricted = _load(args)
    table, digest = read_split(args.split)
    matched, n_dropped = match_dataset(table, manifest, args.split, dataset_hash, restricted)
    audit = audit_split(manifest, matched)
    dropped = f"; dropped {n_dropped:,} split row(s) the restricted dataset lacks" if n_dropped else ""
    audit.checked[:0] = [
        "the split manifest's sha256 sidecar, columns and values: ok",
        f"every one of the dataset's {len(manifest):,} images is in the split{dropped}",
    ]
    print(f"audit of {args.split} (sha256 {digest}) on dataset {name}")
    print(format_audit(audit))
    return 1 if audit.leaky else 0
