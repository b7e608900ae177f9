from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from benchbox.errors import BenchboxError
from benchbox.splits.build import make_split
from benchbox.splits.manifest import (
    canonical_split_path,
    load_split,
    read_split,
    sidecar_paths,
    split_csv_bytes,
    write_split,
)

from splits_helpers import metadata_manifest_of_lesions


@pytest.fixture
def small():
    """12 lesions with 1-3 images each (19 images), 2 classes, metadata only."""
    return metadata_manifest_of_lesions([1, 2, 3, 1, 2, 1, 1, 2, 1, 3, 1, 1], ["nv"] * 7 + ["mel"] * 5)


def write_raw(path, text: str) -> None:
    """A split CSV with a matching sidecar, as if `benchbox split` had written these bytes."""
    path.write_text(text)
    sidecar_paths(path)[0].write_text(f"{hashlib.sha256(text.encode()).hexdigest()}  {path.name}\n")


def test_written_manifest_round_trips_with_sha256_and_json(tmp_path, small):
    table, info = make_split(small, seed=0, folds=2, progress=False)
    path = tmp_path / "s.csv"
    digest = write_split(table, path, {**info, "command": "benchbox split x"}, "toy", "abc123")
    data = path.read_bytes()
    assert digest == hashlib.sha256(data).hexdigest()
    assert sidecar_paths(path)[0].read_text() == f"{digest}  s.csv\n"  # sha256sum -c format
    assert data.decode().splitlines()[0] == "image_id,group_id,split,fold"
    assert data.decode().splitlines()[1].startswith("IMG_00000_0,LES_00000,")
    record = json.loads(sidecar_paths(path)[1].read_text())
    assert record["dataset"] == "toy" and record["dataset_hash"] == "abc123" and record["n_images"] == 19
    assert record["counts"] == table["split"].value_counts().reindex(["train", "val", "test"]).to_dict()
    assert record["grouping"]["by"] == "lesion_id only" and "benchbox_version" in record
    loaded = load_split(path, small)
    assert loaded.sha256 == digest and loaded.n_dropped == 0
    expected = table.assign(fold=table["fold"].astype("Int64"))
    pd.testing.assert_frame_equal(loaded.table, expected)


def test_edited_manifest_is_refused_naming_file_and_regeneration(tmp_path, small):
    table, info = make_split(small, seed=0, progress=False)
    path = tmp_path / "s.csv"
    write_split(table, path, {**info, "command": "benchbox split toy --seed 0 --out s.csv"}, "toy")
    path.write_text(path.read_text().replace(",test", ",train"))
    with pytest.raises(BenchboxError, match=r"s\.csv: its sha256 .* does not match s\.csv\.sha256 .*"
                       r"regenerate it with: benchbox split toy --seed 0 --out s.csv"):
        load_split(path, small)
    sidecar_paths(path)[0].unlink()
    with pytest.raises(BenchboxError, match=r"s\.csv: no s\.csv\.sha256 beside it"):
        read_split(path)


def test_group_in_two_splits_is_refused_naming_group_and_splits(tmp_path, small):
    path = tmp_path / "leak.csv"
    write_raw(path, "image_id,group_id,split\nA,G1,train\nB,G1,test\nC,G2,val\n")
    with pytest.raises(BenchboxError, match=r"group 'G1' has images in test and train \(1 group\(s\) cross"):
        load_split(path, small)
    with pytest.raises(BenchboxError, match=r"out\.csv: group 'G1' has images in test and train"):
        write_split(pd.read_csv(path), tmp_path / "out.csv", {}, "toy")


@pytest.mark.parametrize(
    "text, message",
    [
        ("image_id,split\nA,train\n", r"missing \['group_id'\]"),
        ("image_id,group_id,split\nA,G1,train\nB,G2,testing\n", r"line 3, column 'split': 'testing' is not one of"),
        ("image_id,group_id,split\nA,G1,train\nB,G2,val\nA,G3,test\n", r"line 2, column 'image_id': 'A' is listed"),
        ("image_id,group_id,split,fold\nA,G1,train,0\nB,G2,val,1\n", r"line 3, column 'fold': '1' on a val/test"),
        ("image_id,group_id,split,fold\nA,G1,train,\n", r"line 2, column 'fold': a train row needs a fold number"),
        ("image_id,group_id,split\nA,,train\n", r"line 2, column 'group_id': empty"),
    ],
)
def test_malformed_manifest_names_line_and_column(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    write_raw(path, text)
    with pytest.raises(BenchboxError, match=rf"bad\.csv: .*{message}"):
        read_split(path)


def test_ids_must_match_the_dataset_unless_it_was_restricted(tmp_path, small):
    table, info = make_split(small, seed=0, progress=False)
    path = tmp_path / "s.csv"
    write_split(table, path, info, "toy", dataset_hash="a" * 64)
    bigger = metadata_manifest_of_lesions([1, 2, 3, 1, 2, 1, 1, 2, 1, 3, 1, 1, 2], ["nv"] * 7 + ["mel"] * 6)
    with pytest.raises(BenchboxError, match=r"2 of the dataset's 21 images are not in the split \(e\.g\. IMG_00012_0, "
                       r"IMG_00012_1\); the split was made for dataset 'toy' with hash aaaaaaaaaaaa\.\.\."):
        load_split(path, bigger, dataset_hash="b" * 64)
    # a dataset restricted to the images present: split rows it lacks are dropped only when told so
    present = small[small["image_id"].isin(table.groupby("split")["image_id"].first())].reset_index(drop=True)
    with pytest.raises(BenchboxError, match=r"16 image ids in the split are not in the dataset .*--only-present"):
        load_split(path, present)
    loaded = load_split(path, present, dataset_restricted=True)
    assert loaded.n_dropped == 16
    assert loaded.table["image_id"].tolist() == present["image_id"].tolist()
    assert sorted(loaded.table["split"]) == ["test", "train", "val"]
    one_split = small[small["image_id"] == table.loc[table["split"] == "train", "image_id"].iloc[0]]
    with pytest.raises(BenchboxError, match=r"split\(s\) \['val', 'test'\] hold no image"):
        load_split(path, one_split, dataset_restricted=True)


def test_split_whose_groups_cut_a_dataset_lesion_is_refused(tmp_path):
    manifest = metadata_manifest_of_lesions([2, 1, 1], ["nv", "nv", "nv"])  # IMG_00000_0/1 are one lesion
    path = tmp_path / "s.csv"
    write_raw(
        path,
        "image_id,group_id,split\nIMG_00000_0,X,train\nIMG_00000_1,Y,test\nIMG_00001_0,Z,val\nIMG_00002_0,W,test\n",
    )
    with pytest.raises(BenchboxError, match=r"lesion 'LES_00000' of the dataset has images in test and train"):
        load_split(path, manifest)


def test_canonical_ham10000_split_covers_all_images_leak_free_and_regenerates(ham_metadata):
    path = canonical_split_path("ham10000")
    assert path is not None and path.name == "ham10000_lesion_seed0.csv"
    assert canonical_split_path("synthderm") is None
    loaded = load_split(path, ham_metadata)
    table = loaded.table
    assert len(table) == 10_015 and table["image_id"].nunique() == 10_015
    assert table.groupby(ham_metadata["lesion_id"].to_numpy())["split"].nunique().max() == 1  # no lesion crosses
    assert ham_metadata["lesion_id"].nunique() == 7_470 == table["group_id"].nunique()
    overall = ham_metadata["dx"].value_counts(normalize=True)
    for split in ("train", "val", "test"):
        share = ham_metadata["dx"][(table["split"] == split).to_numpy()].value_counts(normalize=True)
        assert ((share - overall).abs() * 100).max() <= 1.5
    assert table.loc[table["split"] == "train", "fold"].nunique() == 3
    rebuilt, _ = make_split(ham_metadata, seed=0, folds=3, progress=False)
    assert split_csv_bytes(rebuilt) == path.read_bytes()
    assert json.loads(sidecar_paths(path)[1].read_text())["grouping"]["by"] == "lesion_id only"
