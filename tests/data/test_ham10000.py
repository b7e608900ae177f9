import time

import numpy as np
import pandas as pd
import pytest

from benchbox.data.ham10000 import load_ham10000, metadata_manifest
from benchbox.data.manifest import MANIFEST_COLUMNS
from benchbox.errors import BenchboxError


def test_real_sample_refuses_by_default_naming_the_missing_count(ham_sample):
    with pytest.raises(BenchboxError) as error:
        load_ham10000(ham_sample, progress=False)
    message = str(error.value)
    assert "9,870 of them are not in" in message and "HAM10000_images_part_1/" in message
    assert "--only-present" in message and "145 images" in message


def test_real_sample_only_present_reads_the_145_images(ham_sample):
    dataset = load_ham10000(ham_sample, only_present=True, progress=False)
    manifest = dataset.manifest
    assert len(manifest) == 145
    assert list(manifest.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert (manifest["mask_path"] != "").sum() == 5
    assert manifest.groupby("dx").size().min() == 20
    official = pd.read_csv(ham_sample / "HAM10000_metadata.csv").set_index("image_id")
    row = manifest.set_index("image_id").loc["ISIC_0027001"]
    assert row["dx"] == official.loc["ISIC_0027001", "dx"]
    assert row["lesion_id"] == official.loc["ISIC_0027001", "lesion_id"]
    assert row["source"] == official.loc["ISIC_0027001", "dataset"]
    assert row["malignant"] == int(row["dx"] in ("mel", "bcc", "akiec"))
    assert manifest["ita"].notna().all() and set(manifest["ita_category"]) <= {
        "very_light", "light", "intermediate", "tan", "brown", "dark"}
    images, masks = dataset.arrays(64, progress=False)
    assert images.shape == (145, 64, 64, 3) and images.dtype == np.uint8
    masked = (manifest["mask_path"] != "").to_numpy()
    assert masks[masked].reshape(5, -1).any(axis=1).all() and not masks[~masked].any()


def test_metadata_manifest_covers_the_full_release_without_images(ham_sample):
    manifest = metadata_manifest(ham_sample)
    assert len(manifest) == 10015 and manifest["lesion_id"].nunique() == 7470
    assert manifest["dx"].value_counts()["nv"] == 6705
    assert manifest["age"].isna().sum() == 57


def test_second_load_reuses_the_cache_and_is_identical(make_ham_layout):
    root = make_ham_layout(["nv", "mel", "bcc", "nv"] * 30)
    start = time.perf_counter()
    first = load_ham10000(root, progress=False)
    first_images, _ = first.arrays(48, progress=False)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    second = load_ham10000(root, progress=False)
    second_images, _ = second.arrays(48, progress=False)
    warm = time.perf_counter() - start
    assert second.hash == first.hash
    np.testing.assert_array_equal(second_images, first_images)
    pd.testing.assert_frame_equal(second.manifest, first.manifest)
    assert warm < cold  # the benchmark of the ratio is in the README; here only that the cache was used


def test_editing_an_image_changes_the_dataset_hash(make_ham_layout):
    root = make_ham_layout(["nv", "mel"])
    before = load_ham10000(root, progress=False).hash
    path = root / "HAM10000_images_part_1" / "IMG_0000001.jpg"
    path.write_bytes(path.read_bytes() + b"\x00")
    assert load_ham10000(root, progress=False).hash != before


def test_images_may_be_split_over_both_parts(make_ham_layout):
    root = make_ham_layout(["nv", "mel", "bkl"])
    part2 = root / "HAM10000_images_part_2"
    part2.mkdir()
    (root / "HAM10000_images_part_1" / "IMG_0000002.jpg").rename(part2 / "IMG_0000002.jpg")
    manifest = load_ham10000(root, progress=False).manifest
    assert manifest.set_index("image_id").loc["IMG_0000002", "path"].endswith("part_2/IMG_0000002.jpg")


def _edit_metadata(root, edit):
    path = root / "HAM10000_metadata.csv"
    table = pd.read_csv(path, dtype=str)
    edit(table).to_csv(path, index=False)


def test_misnamed_column_is_named_with_a_suggestion(make_ham_layout):
    root = make_ham_layout(["nv", "mel"])
    _edit_metadata(root, lambda t: t.rename(columns={"dx": "dxx"}))
    with pytest.raises(BenchboxError, match=r"missing column\(s\) 'dx' \(found 'dxx': rename it\?\)"):
        load_ham10000(root, progress=False)


def test_unknown_label_names_the_line_and_column(make_ham_layout):
    root = make_ham_layout(["nv", "mel", "nv"])
    _edit_metadata(root, lambda t: t.assign(dx=["nv", "mel", "melanoma"]))
    with pytest.raises(BenchboxError, match=r"line 4, column 'dx': label 'melanoma'"):
        load_ham10000(root, progress=False)


def test_duplicate_image_ids_are_refused(make_ham_layout):
    root = make_ham_layout(["nv", "mel", "nv"])
    _edit_metadata(root, lambda t: t.assign(image_id=["IMG_0000000", "IMG_0000001", "IMG_0000000"]))
    with pytest.raises(BenchboxError, match=r"image_id 'IMG_0000000' appears on lines \[2, 4\]"):
        load_ham10000(root, progress=False)


def test_truncated_image_fails_by_name_or_is_skipped(make_ham_layout):
    root = make_ham_layout(["nv", "mel", "bcc"])
    bad = root / "HAM10000_images_part_1" / "IMG_0000001.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(BenchboxError, match=r"cannot read image .*IMG_0000001\.jpg.*--on-bad-image skip"):
        load_ham10000(root, progress=False)
    dataset = load_ham10000(root, on_bad_image="skip", progress=False)
    assert list(dataset.manifest["image_id"]) == ["IMG_0000000", "IMG_0000002"]
    assert any("skipped 1 unreadable image" in note for note in dataset.notes)
