"""Leak-free groups: every image of a lesion, plus near-duplicate images, share one group id.

HAM10000 files some images of one lesion under different lesion_ids, so lesion_id alone
does not stop a lesion from reaching both train and test. Near-duplicates are found with
a 256-bit perceptual hash (imagehash's DCT `phash`, hash_size 16) made invariant to the
8 flips and quarter-turns: each image is hashed in all 8 orientations and two images are
compared at the orientation that matches best. Two images whose best Hamming distance is
at most NEAR_DUPLICATE_MAX_BITS of 256 are near-duplicates.

Why 40 bits: on the 180 real dermoscopy images in ../shared/data (16,110 distinct pairs)
the closest distinct pair differs by 70 bits and 1% of pairs by fewer than 98. Copies of
them (1,800 in all: flipped or quarter-turned and rescaled 0.5-1.6x with JPEG quality
70-95, resized to 224 px, squashed to 224x224, brightened +-15%) differ by at most 28 bits
(95% within 18). The threshold sits in the gap. Not reliably caught: crops (a 3% crop of
two sides is caught 1 time in 4, 6% never) and rotations by other angles than quarter-turns.

Groups are the connected components of the graph whose edges join images of one lesion
and near-duplicate pairs (what a union-find computes); a group is named after the
smallest lesion_id it holds, so with no merges group_id == lesion_id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import imagehash
import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

from ..errors import BenchboxError

HASH_SIZE = 16  # phash side: 16 x 16 = 256 bits
HASH_WORDS = HASH_SIZE * HASH_SIZE // 64
NEAR_DUPLICATE_MAX_BITS = 40
ORIENTATIONS = (
    None,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)
_CHUNK_ELEMENTS = 1 << 22  # pairs compared per numpy step (4M pairs: 32 MB per uint64 buffer)


def _orientation_hashes(path: str) -> np.ndarray:
    """The 8 orientation hashes of one image (8 x HASH_WORDS uint64), reading the file once."""
    side = HASH_SIZE * 4  # phash works on a (4 * hash_size)^2 grey thumbnail
    try:
        with Image.open(path) as image:
            image.draft("L", (side, side))  # JPEG: decode at reduced scale, much faster
            thumbnail = image.convert("L").resize((side, side), Image.Resampling.LANCZOS)
    except (OSError, UnidentifiedImageError) as error:
        raise BenchboxError(
            f"{path}: cannot read the image for near-duplicate hashing ({error}). Replace or remove the "
            "file, or load the dataset with --on-bad-image skip."
        ) from error
    variants = (thumbnail if t is None else thumbnail.transpose(t) for t in ORIENTATIONS)
    bits = np.stack([imagehash.phash(v, hash_size=HASH_SIZE).hash.ravel() for v in variants])
    return np.packbits(bits, axis=1).view(np.uint64)


def perceptual_hashes(paths: Sequence[str], progress: bool = True) -> np.ndarray:
    """N x 8 x 4 uint64: each image's 256-bit phash in the 8 orientations (row 0 = as stored)."""
    hashes = np.empty((len(paths), len(ORIENTATIONS), HASH_WORDS), dtype=np.uint64)
    for i, path in enumerate(tqdm(paths, desc="hashing images", unit="img", disable=not progress)):
        hashes[i] = _orientation_hashes(str(path))
    return hashes


def near_duplicate_pairs(
    hashes: np.ndarray, max_bits: int = NEAR_DUPLICATE_MAX_BITS, progress: bool = True
) -> np.ndarray:
    """All pairs i < j whose best-orientation Hamming distance is <= max_bits: P x 3 (i, j, bits).

    Vectorised popcount over uint64 words into preallocated buffers, in row chunks, so memory
    stays bounded (~50 MB of buffers) at 10k+ images.
    """
    n = len(hashes)
    as_stored = hashes[:, 0, :]
    by_word = np.ascontiguousarray(hashes.transpose(1, 2, 0))  # orientation x word x image
    chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    found = [np.empty((0, 3), dtype=np.int64)]
    starts = range(0, n, chunk)
    for start in tqdm(starts, desc="comparing hashes", unit="chunk", disable=not progress or len(starts) < 2):
        rows = as_stored[start : start + chunk]  # compared with images start.. only, for i < j
        shape = (len(rows), n - start)
        best = np.full(shape, np.iinfo(np.uint16).max, dtype=np.uint16)
        bits, xor, count = np.empty(shape, np.uint16), np.empty(shape, np.uint64), np.empty(shape, np.uint8)
        for k in range(len(ORIENTATIONS)):
            bits.fill(0)
            for w in range(HASH_WORDS):
                np.bitwise_xor(rows[:, w, None], by_word[k, w, None, start:], out=xor)
                np.bitwise_count(xor, out=count)
                np.add(bits, count, out=bits)
            np.minimum(best, bits, out=best)
        i, j = np.nonzero(best <= max_bits)
        upper = j > i  # column 0 is row 0 itself
        found.append(np.column_stack([i[upper] + start, j[upper] + start, best[i[upper], j[upper]]]).astype(np.int64))
    return np.concatenate(found)


def lesion_ids_or_image_ids(manifest: pd.DataFrame) -> pd.Series:
    """lesion_id, with an image that has none (empty or missing) counted as its own lesion."""
    lesions = manifest["lesion_id"].astype("string").fillna("").str.strip()
    return lesions.where(lesions != "", manifest["image_id"].astype(str)).astype(str)


def group_ids(lesion_ids: Sequence[str], pairs: np.ndarray | None = None) -> np.ndarray:
    """Group id per image: connected components over same-lesion links and near-duplicate `pairs`."""
    lesions = pd.Series(np.asarray(lesion_ids, dtype=str))
    n = len(lesions)
    codes, _ = pd.factorize(lesions)
    _, first = np.unique(codes, return_index=True)  # first image of each lesion
    edges = [np.column_stack([np.arange(n), first[codes]])]
    if pairs is not None and len(pairs):
        edges.append(np.asarray(pairs)[:, :2])
    links = np.concatenate(edges)
    graph = coo_matrix((np.ones(len(links), dtype=np.int8), (links[:, 0], links[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    return lesions.groupby(component).transform("min").to_numpy(dtype=object)


def image_paths(manifest: pd.DataFrame) -> list[str] | None:
    """Every row's image path, or None for a metadata-only manifest (all paths empty); refuses a mix."""
    paths = manifest["path"].astype("string").fillna("")
    if (paths == "").all():
        return None
    if (paths == "").any():
        missing = manifest.loc[(paths == "").to_numpy(), "image_id"]
        raise BenchboxError(
            f"{len(missing):,} of {len(manifest):,} manifest rows have no image path (column 'path', e.g. "
            f"{', '.join(map(str, missing.head(3)))}); near-duplicate checks need every image. Load the "
            "dataset with --only-present, or use its metadata alone (--metadata-only)."
        )
    return paths.tolist()


class Grouping(NamedTuple):
    """A manifest's groups and the links that made them (drop.py names the link behind each drop)."""

    groups: np.ndarray  # group id per row
    description: dict  # how grouping was done, for the split's json
    lesions: np.ndarray  # lesion id per row (the image id where it has none)
    pairs: np.ndarray | None  # near-duplicate pairs P x 3 (i, j, bits); None when no image was checked


def grouping_of(manifest: pd.DataFrame, progress: bool = True) -> Grouping:
    """Group id per manifest row, with how grouping was done and the lesion and near-duplicate links.

    Near-duplicates need every image; a metadata-only manifest (all paths empty) is grouped by
    lesion_id alone and the description says so.
    """
    lesions = lesion_ids_or_image_ids(manifest)
    paths = image_paths(manifest)
    if paths is None:
        description = {
            "by": "lesion_id only",
            "near_duplicates": "not checked: the dataset has no image files (built from metadata alone)",
        }
        return Grouping(group_ids(lesions), description, lesions.to_numpy(), None)
    pairs = near_duplicate_pairs(perceptual_hashes(paths, progress), progress=progress)
    groups = group_ids(lesions, pairs)
    lesion_array = lesions.to_numpy()
    across = int((lesion_array[pairs[:, 0]] != lesion_array[pairs[:, 1]]).sum())
    lesions_per_group = pd.Series(lesion_array).groupby(groups).nunique()
    description = {
        "by": "lesion_id + near-duplicate images",
        "near_duplicates": {
            "hash": f"imagehash.phash, hash_size {HASH_SIZE} ({HASH_SIZE * HASH_SIZE} bits), best of 8 orientations",
            "max_bits": NEAR_DUPLICATE_MAX_BITS,
            "pairs": int(len(pairs)),
            "pairs_across_lesion_ids": across,
            "groups_merging_lesion_ids": int((lesions_per_group > 1).sum()),
        },
    }
    return Grouping(groups, description, lesion_array, pairs)


def group_manifest(manifest: pd.DataFrame, progress: bool = True) -> tuple[np.ndarray, dict]:
    """Group id per manifest row, and a description of how grouping was done (for the split's json)."""
    grouping = grouping_of(manifest, progress)
    return grouping.groups, grouping.description
