from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image

from benchbox.errors import BenchboxError
from benchbox.splits import grouping
from benchbox.splits.grouping import (
    NEAR_DUPLICATE_MAX_BITS,
    group_ids,
    group_manifest,
    near_duplicate_pairs,
    perceptual_hashes,
)

from splits_helpers import SHARED_DATA, lesion_image, manifest_from


def brute_force_pairs(hashes: np.ndarray, max_bits: int) -> set[tuple[int, int, int]]:
    """Python ints and int.bit_count, pair by pair: the independent reference for the numpy version."""
    as_ints = [[int.from_bytes(h.tobytes(), "little") for h in image] for image in hashes]
    found = set()
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            bits = min((as_ints[i][0] ^ other).bit_count() for other in as_ints[j])
            if bits <= max_bits:
                found.add((i, j, bits))
    return found


def test_hash_rows_are_imagehash_phash_of_each_orientation(tmp_path):
    path = tmp_path / "a.png"
    lesion_image(1).save(path)
    hashes = perceptual_hashes([str(path)], progress=False)[0]
    thumbnail = Image.open(path).convert("L").resize((64, 64), Image.Resampling.LANCZOS)
    expected = imagehash.phash(thumbnail.transpose(Image.Transpose.ROTATE_90), hash_size=16)
    stored = grouping.ORIENTATIONS.index(Image.Transpose.ROTATE_90)
    assert np.array_equal(np.unpackbits(hashes[stored].view(np.uint8)), expected.hash.ravel())


def test_vectorised_pairs_match_brute_force_across_chunks(monkeypatch):
    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 2**63, size=(40, 8, 4), dtype=np.uint64)
    flips = (rng.random((13, 8, 4, 64)) < 0.06)  # ~15 of 256 bits changed
    noise = np.packbits(flips, axis=-1, bitorder="little").view(np.uint64)[..., 0]
    hashes[27:40] = hashes[0:13] ^ noise  # plant 13 near pairs (i, i + 27)
    hashes[30, 3] = hashes[5, 0]  # image 30 equals image 5 in orientation 3 only
    hashes[25] = hashes[20] ^ np.array([2**40 - 1, 0, 0, 0], dtype=np.uint64)  # exactly 40 bits apart
    hashes[26] = hashes[21] ^ np.array([2**41 - 1, 0, 0, 0], dtype=np.uint64)  # 41 bits apart
    monkeypatch.setattr(grouping, "_CHUNK_ELEMENTS", 90)  # 2 rows per chunk: 20 chunks
    got = {tuple(p) for p in near_duplicate_pairs(hashes, max_bits=40, progress=False).tolist()}
    assert got == brute_force_pairs(hashes, 40)
    assert (5, 30, 0) in got
    assert (20, 25, 40) in got and (21, 26, 41) not in got  # the threshold is inclusive
    assert {(i, i + 27) for i in range(13)} <= {(i, j) for i, j, _ in got}


def test_union_of_lesions_and_near_duplicate_pairs():
    # lesions: A = {0, 1}, B = {2}, C = {3, 4}, D = {5}; pairs join 1~2 and 4~5 -> {0,1,2} and {3,4,5}
    lesions = ["LES_A", "LES_A", "LES_B", "LES_C", "LES_C", "LES_D", "LES_E"]
    pairs = np.array([[1, 2, 3], [4, 5, 10]])
    assert list(group_ids(lesions, pairs)) == ["LES_A"] * 3 + ["LES_C"] * 3 + ["LES_E"]
    assert list(group_ids(lesions)) == lesions


@pytest.fixture
def planted(tmp_path):
    """8 distinct lesion images plus 4 transformed copies, each copy under a new lesion id."""
    rows = []
    for k in range(8):
        path = tmp_path / f"orig_{k}.jpg"
        lesion_image(k).save(path, quality=92)
        rows.append({"image_id": f"ORIG_{k}", "lesion_id": f"LES_{k}", "dx": "nv", "path": str(path)})
    copies = {
        "ROT90": (0, lambda im: im.transpose(Image.Transpose.ROTATE_90)),
        "FLIP": (1, lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
        "HALF": (2, lambda im: im.resize((60, 45), Image.Resampling.BILINEAR)),
        "ROT270_X1.7": (3, lambda im: im.transpose(Image.Transpose.ROTATE_270).resize((153, 204))),
    }
    for name, (source, transform) in copies.items():
        path = tmp_path / f"{name}.jpg"
        transform(lesion_image(source)).save(path, quality=80)
        rows.append({"image_id": name, "lesion_id": f"OTHER_{name}", "dx": "mel", "path": str(path)})
    return manifest_from(rows)


def test_rotated_flipped_rescaled_copies_join_their_original(planted):
    groups, description = group_manifest(planted, progress=False)
    group_of = dict(zip(planted["image_id"], groups))
    assert group_of["ROT90"] == group_of["ORIG_0"] == "LES_0"
    assert group_of["FLIP"] == group_of["ORIG_1"] == "LES_1"
    assert group_of["HALF"] == group_of["ORIG_2"] == "LES_2"
    assert group_of["ROT270_X1.7"] == group_of["ORIG_3"] == "LES_3"
    # no false merge: the 8 distinct images stay in 8 groups
    assert len({group_of[f"ORIG_{k}"] for k in range(8)}) == 8
    assert len(set(groups)) == 8
    assert description["near_duplicates"]["pairs_across_lesion_ids"] == 4
    assert description["near_duplicates"]["groups_merging_lesion_ids"] == 4


def test_real_distinct_lesions_are_not_merged_but_their_copies_are(tmp_path):
    folder = SHARED_DATA / "ham10000_sample" / "HAM10000_images_part_1"
    if not folder.exists():
        pytest.skip("../shared/data/ham10000_sample is not present")
    paths = sorted(str(p) for p in folder.glob("*.jpg"))
    hashes = perceptual_hashes(paths, progress=False)
    assert len(near_duplicate_pairs(hashes, progress=False)) == 0  # 145 images of 145 distinct lesions
    copy = tmp_path / "copy.jpg"
    original = Image.open(paths[0])
    original.transpose(Image.Transpose.ROTATE_180).resize((300, 225)).save(copy, quality=75)
    pairs = near_duplicate_pairs(np.concatenate([hashes[:1], perceptual_hashes([str(copy)], progress=False)]))
    assert pairs[:, :2].tolist() == [[0, 1]] and pairs[0, 2] <= NEAR_DUPLICATE_MAX_BITS


def test_metadata_only_manifest_is_grouped_by_lesion_and_says_so():
    manifest = manifest_from(
        [{"image_id": f"I{i}", "lesion_id": lesion, "dx": "nv"} for i, lesion in enumerate(["A", "A", "B", ""])]
    )
    groups, description = group_manifest(manifest, progress=False)
    assert list(groups) == ["A", "A", "B", "I3"]  # an image without lesion id is its own lesion
    assert description["by"] == "lesion_id only"
    assert "not checked" in description["near_duplicates"]


def test_partly_missing_paths_and_unreadable_images_are_refused(tmp_path):
    good = tmp_path / "good.jpg"
    lesion_image(0).save(good)
    mixed = manifest_from(
        [
            {"image_id": "I0", "lesion_id": "A", "dx": "nv", "path": str(good)},
            {"image_id": "I1", "lesion_id": "B", "dx": "nv"},
        ]
    )
    with pytest.raises(BenchboxError, match=r"1 of 2 manifest rows have no image path \(column 'path', e.g. I1\)"):
        group_manifest(mixed, progress=False)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:200])
    with pytest.raises(BenchboxError, match=r"broken\.jpg: cannot read the image .*--on-bad-image skip"):
        perceptual_hashes([str(good), str(broken)], progress=False)
