"""Split manifests on disk: write them with their hash, and refuse any that is not intact.

A split manifest is a CSV `image_id,group_id,split[,fold]` (rows sorted by image_id; `fold`
is set on train rows only) with two sidecars beside it:
`<file>.sha256` (sha256sum format: `sha256sum -c` checks it) and `<file>.json` (dataset,
scheme, seed, fractions, grouping, counts, benchbox version, the command that made it).
The CSV's sha256 is the split's identity: runs record it, and the gate compares it.

`split` is train, val or test, or DROPPED for an image `--drop-leaking` took out of a leaking
official split (drop.py): the row stays, so the CSV still lists every dataset image and which
images were dropped is part of the hashed identity; why each was dropped is in the json
(`dropped_images`). A dropped row is in no part, so it never makes a group or lesion cross.
"""

from __future__ import annotations

import hashlib
import json
from io import BytesIO
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from .. import __version__
from ..errors import BenchboxError
from ..paths import atomic_write
from . import DROPPED, SPLITS
from .grouping import lesion_ids_or_image_ids

SPLIT_COLUMNS = ("image_id", "group_id", "split")
FOLD_COLUMN = "fold"
CANONICAL_DIR = Path(__file__).resolve().parent / "canonical"
CANONICAL_SPLITS = {"ham10000": "ham10000_lesion_seed0.csv"}
REGENERATE_HINT = "benchbox split DATA --out FILE (see `benchbox split --help`)"


class LoadedSplit(NamedTuple):
    """A verified split: the table (dataset manifest order), its sha256, and rows dropped by a restriction."""

    table: pd.DataFrame
    sha256: str
    n_dropped: int


def sidecar_paths(path: Path) -> tuple[Path, Path]:
    """(`<file>.sha256`, `<file>.json`)."""
    path = Path(path)
    return path.with_name(path.name + ".sha256"), path.with_name(path.name + ".json")


def canonical_split_path(dataset_name: str) -> Path | None:
    """The shipped split for a dataset (HAM10000), or None when benchbox ships none for it."""
    name = CANONICAL_SPLITS.get(dataset_name)
    path = CANONICAL_DIR / name if name else None
    return path if path is not None and path.is_file() else None


def crossings(keys: pd.Series, splits: pd.Series) -> pd.DataFrame:
    """Keys (group or lesion ids) found in more than one split: key, splits ('test+train'), images.

    Rows whose split is DROPPED are in no split, so they are left out (a dropped val image shares its
    group with the training image it duplicates: that is why it was dropped, not a leak).
    """
    frame = pd.DataFrame({"key": keys.to_numpy(), "split": splits.to_numpy()})
    frame = frame[frame["split"] != DROPPED]
    per_key = frame.groupby("key")["split"].agg(["nunique", "size"])
    crossing = frame[frame["key"].isin(per_key.index[per_key["nunique"] > 1])]
    names = crossing.groupby("key")["split"].agg(lambda s: "+".join(sorted(set(s))))
    found = pd.DataFrame({"splits": names, "images": per_key["size"].reindex(names.index)})
    return found.rename_axis("key").reset_index()


def split_csv_bytes(table: pd.DataFrame) -> bytes:
    """The exact bytes of a split manifest: fixed columns, sorted rows, '\\n' line ends."""
    columns = list(SPLIT_COLUMNS) + ([FOLD_COLUMN] if FOLD_COLUMN in table else [])
    frame = table[columns].sort_values("image_id", kind="stable")
    if FOLD_COLUMN in frame:
        frame = frame.assign(fold=frame[FOLD_COLUMN].astype("Int64"))
    return frame.to_csv(index=False, lineterminator="\n").encode()


def write_split(
    table: pd.DataFrame, path: Path, info: dict, dataset_name: str, dataset_hash: str | None = None
) -> str:
    """Write the CSV, its .sha256 and .json; return the sha256. Refuses a table a reader would refuse."""
    path = Path(path)
    data = split_csv_bytes(table)
    parsed = _parse_split_csv(data, path)
    _refuse_crossing_groups(parsed, path)
    _refuse_unrecorded_drops(parsed, info.get("dropped_images", []), path)
    digest = hashlib.sha256(data).hexdigest()
    sha_path, json_path = sidecar_paths(path)
    counts = {s: int((parsed["split"] == s).sum()) for s in SPLITS}
    if "dropped_images" in info:
        counts[DROPPED] = int((parsed["split"] == DROPPED).sum())
    record = {
        "dataset": dataset_name,
        "dataset_hash": dataset_hash,
        **info,
        "n_images": len(parsed),
        "n_groups": int(parsed["group_id"].nunique()),
        "counts": counts,
        "benchbox_version": __version__,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    atomic_write(sha_path, lambda tmp: Path(tmp).write_text(f"{digest}  {path.name}\n"))
    atomic_write(json_path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2) + "\n"))
    return digest


def _regenerate_hint(path: Path) -> str:
    """The command recorded in the split's json, else the generic one."""
    try:
        return json.loads(sidecar_paths(path)[1].read_text())["command"]
    except (OSError, ValueError, KeyError, TypeError):
        return REGENERATE_HINT


def _parse_split_csv(data: bytes, path: Path) -> pd.DataFrame:
    """Check a split CSV's columns and values, naming the line (header = line 1) of the first problem."""
    try:
        frame = pd.read_csv(BytesIO(data), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise BenchboxError(f"{path}: cannot parse as a split manifest CSV ({error}).") from error
    missing = [c for c in SPLIT_COLUMNS if c not in frame]
    extra = [c for c in frame if c not in SPLIT_COLUMNS + (FOLD_COLUMN,)]
    if missing or extra:
        raise BenchboxError(
            f"{path}: columns {list(frame.columns)} are not a split manifest's; it needs "
            f"{list(SPLIT_COLUMNS)} and optionally {FOLD_COLUMN!r}"
            + (f" (missing {missing})" if missing else "")
            + (f" (unexpected {extra})" if extra else "")
            + f". Regenerate it with: {_regenerate_hint(path)}"
        )

    def refuse_rows(bad: pd.Series, column: str, problem: str) -> None:
        """Name the first bad line; `problem` may use {value}, the cell's content."""
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            detail = problem.format(value=repr(frame[column].iloc[row]))
            raise BenchboxError(
                f"{path}: line {row + 2}, column {column!r}: {detail} ({int(bad.sum())} row(s) affected). "
                f"Regenerate the manifest with: {_regenerate_hint(path)}"
            )

    for column in SPLIT_COLUMNS:
        refuse_rows(frame[column].str.strip() == "", column, "empty")
    values = list(SPLITS) + [DROPPED]
    refuse_rows(~frame["split"].isin(values), "split", f"{{value}} is not one of {values}")
    refuse_rows(
        frame["image_id"].duplicated(keep=False), "image_id", "{value} is listed more than once; one split per image"
    )
    if FOLD_COLUMN in frame:
        train = frame["split"] == "train"
        fold = pd.to_numeric(frame[FOLD_COLUMN], errors="coerce")
        whole = fold.notna() & (fold >= 0) & (fold % 1 == 0)
        refuse_rows(train & ~whole, FOLD_COLUMN, "a train row needs a fold number (0, 1, ...), found {value}")
        refuse_rows(
            ~train & (frame[FOLD_COLUMN] != ""), FOLD_COLUMN, "{value} on a val/test/dropped row; only train has folds"
        )
        frame[FOLD_COLUMN] = fold.astype("Int64")
    return frame


def _refuse_crossing_groups(table: pd.DataFrame, path: Path) -> None:
    crossing = crossings(table["group_id"], table["split"])
    if len(crossing):
        first = crossing.iloc[0]
        raise BenchboxError(
            f"{path}: group {first['key']!r} has images in {first['splits'].replace('+', ' and ')} "
            f"({len(crossing)} group(s) cross splits): the split leaks. Regenerate it with: {_regenerate_hint(path)}"
        )


def _refuse_unrecorded_drops(table: pd.DataFrame, records, path: Path, where: str = "the split's json") -> None:
    """The json's `dropped_images` must name exactly the CSV's DROPPED rows, or the reasons are not this split's."""
    if not isinstance(records, list) or not all(isinstance(r, dict) and "image_id" in r for r in records):
        raise BenchboxError(
            f"{path}: 'dropped_images' in {where} is not a list of records with an 'image_id'. "
            f"Regenerate the split with: {_regenerate_hint(path)}"
        )
    in_csv = set(table.loc[table["split"] == DROPPED, "image_id"])
    in_json = {str(r["image_id"]) for r in records}
    if in_csv != in_json:
        only_csv, only_json = sorted(in_csv - in_json), sorted(in_json - in_csv)
        raise BenchboxError(
            f"{path}: the rows with split {DROPPED!r} and the 'dropped_images' of {where} differ"
            + (f" ({len(only_csv)} dropped in the CSV only, e.g. {', '.join(only_csv[:3])})" if only_csv else "")
            + (f" ({len(only_json)} listed in the json only, e.g. {', '.join(only_json[:3])})" if only_json else "")
            + f": the json does not describe this CSV. Regenerate the split with: {_regenerate_hint(path)}"
        )


def dropped_images(split_path: Path) -> list[dict]:
    """The images `--drop-leaking` took out of this split and why (for the report header and run.json).

    One dict per dropped image, sorted by image_id:
      image_id, lesion_id, group_id: the image, its lesion (its image id when it has none), its group;
      part: the official part it was in ('val' or 'test'); kept_part: the part its group kept
        ('train' or 'val'; precedence train > val > test, train is never dropped);
      duplicates: list of {image_id, part, by, bits}: the images of earlier parts it duplicates
        directly (or, when it reaches them only through other dropped images, every image it
        duplicates); by is 'lesion_id' (same lesion) or 'near-duplicate' (perceptual hash across
        lesion ids); bits is the hash distance (of 256; <= 40 is a near-duplicate), or None for a
        same-lesion image that is not a near-duplicate or was never hashed (metadata-only data).
    [] when nothing was dropped (every split not made with --drop-leaking). The CSV is checked
    against its sha256 and the json's list against the CSV's 'dropped' rows, so the list is what
    the hashed split holds; a mismatch or an unreadable json beside dropped rows is refused.
    """
    path = Path(split_path)
    table, _ = read_split(path)
    json_path = sidecar_paths(path)[1]
    try:
        records = json.loads(json_path.read_text()).get("dropped_images", [])
    except (OSError, ValueError, AttributeError) as error:
        if not (table["split"] == DROPPED).any():
            return []
        raise BenchboxError(
            f"{path}: it drops {int((table['split'] == DROPPED).sum())} image(s) but {json_path.name}, which says "
            f"why, cannot be read ({error}). Restore it, or regenerate the split with: {_regenerate_hint(path)}"
        ) from error
    _refuse_unrecorded_drops(table, records, path, json_path.name)
    return sorted(records, key=lambda r: str(r["image_id"]))


def read_split(path: Path) -> tuple[pd.DataFrame, str]:
    """The checked split table and its sha256; refuses a missing or mismatched .sha256 and a malformed CSV.

    Group crossings are not refused here, so that `benchbox audit` can report them; `load_split` refuses them.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchboxError(f"{path}: split manifest not found. Write one with: {REGENERATE_HINT}")
    sha_path, _ = sidecar_paths(path)
    if not sha_path.is_file():
        raise BenchboxError(
            f"{path}: no {sha_path.name} beside it, so its integrity cannot be checked. Split manifests are "
            f"written with their hash by `benchbox split`; regenerate it with: {_regenerate_hint(path)}"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    recorded = (sha_path.read_text().split() or [""])[0].lower()
    if digest != recorded:
        raise BenchboxError(
            f"{path}: its sha256 {digest[:16]}... does not match {sha_path.name} ({recorded[:16]}...): the file "
            f"changed after it was written. Restore the original or regenerate it with: {_regenerate_hint(path)}"
        )
    return _parse_split_csv(data, path), digest


def match_dataset(
    table: pd.DataFrame,
    dataset_manifest: pd.DataFrame,
    path: Path,
    dataset_hash: str | None = None,
    dataset_restricted: bool = False,
) -> tuple[pd.DataFrame, int]:
    """The split rows of the dataset's images, in manifest order, and how many split rows were dropped.

    Every dataset image must be in the split. Split rows for images the dataset lacks are dropped
    only when the dataset was restricted on purpose (e.g. --only-present); otherwise refused.
    """
    dataset_ids = dataset_manifest["image_id"].astype(str)
    in_split = dataset_ids.isin(table["image_id"])
    made_for = _made_for(path, dataset_hash)
    if not in_split.all():
        absent = dataset_ids[~in_split]
        raise BenchboxError(
            f"{path}: {len(absent):,} of the dataset's {len(dataset_ids):,} images are not in the split "
            f"(e.g. {', '.join(absent.head(3))}){made_for}. Make a split for this dataset with: {REGENERATE_HINT}"
        )
    extra = ~table["image_id"].isin(dataset_ids)
    n_dropped = int(extra.sum())
    if n_dropped and not dataset_restricted:
        raise BenchboxError(
            f"{path}: {n_dropped:,} image ids in the split are not in the dataset (e.g. "
            f"{', '.join(table.loc[extra, 'image_id'].head(3))}){made_for}. If the dataset lacks them on purpose "
            "(images not downloaded, or left out by --on-bad-image skip), pass --only-present and those rows are "
            "dropped; otherwise "
            f"make a split for this dataset with: {REGENERATE_HINT}"
        )
    matched = table.set_index("image_id").loc[dataset_ids.to_numpy()].reset_index()
    return matched, n_dropped


def _made_for(path: Path, dataset_hash: str | None) -> str:
    """'; the split was made for dataset X with hash ..., this dataset's is ...' when the hashes differ, else ''."""
    try:
        record = json.loads(sidecar_paths(path)[1].read_text())
    except (OSError, ValueError):
        return ""
    recorded = record.get("dataset_hash")
    if dataset_hash and recorded and recorded != dataset_hash:
        return (
            f"; the split was made for dataset {record.get('dataset')!r} with hash {recorded[:12]}..., "
            f"this dataset's hash is {dataset_hash[:12]}..."
        )
    return ""


def load_split(
    path: Path, dataset_manifest: pd.DataFrame, dataset_hash: str | None = None, dataset_restricted: bool = False
) -> LoadedSplit:
    """A split manifest checked against its hash, for leaks, and against the dataset it will be used with.

    The table keeps the manifest's rows and order; images `--drop-leaking` dropped have split
    'dropped' (in no part: select rows by a value of SPLITS; `dropped_images` says why).
    Refuses: a hash mismatch, a malformed CSV, a group or a dataset lesion in two splits, dataset
    images absent from the split, and split images absent from the dataset unless
    `dataset_restricted` (then they are dropped and counted), and a split left empty by that.
    """
    path = Path(path)
    table, digest = read_split(path)
    _refuse_crossing_groups(table, path)
    matched, n_dropped = match_dataset(table, dataset_manifest, path, dataset_hash, dataset_restricted)
    lesions = crossings(lesion_ids_or_image_ids(dataset_manifest), matched["split"])
    if len(lesions):
        first = lesions.iloc[0]
        raise BenchboxError(
            f"{path}: lesion {first['key']!r} of the dataset has images in {first['splits'].replace('+', ' and ')} "
            f"({len(lesions)} lesion(s) cross splits): this split was not made for this dataset's lesions. "
            f"Make a split for it with: {REGENERATE_HINT}; or, to measure what such a leak inflates, pass "
            "--allow-leaky-split (the run is stamped LEAKY) or run `benchbox audit DATA --split FILE --measure METHOD`"
        )
    empty = [s for s in SPLITS if not (matched["split"] == s).any()]
    if empty:
        raise BenchboxError(
            f"{path}: after dropping the {n_dropped:,} images the dataset lacks, split(s) {empty} hold no image. "
            f"Use more of the dataset, or make a split for this subset with: {REGENERATE_HINT}"
        )
    return LoadedSplit(matched, digest, n_dropped)
