from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchbox.errors import BenchboxError
from benchbox.splits.build import image_level_split, make_split

from splits_helpers import lesion_image, manifest_from, metadata_manifest_of_lesions


def test_lesion_split_table_with_folds_on_train_only(random_manifest):
    table, info = make_split(random_manifest, seed=4, folds=3, progress=False)
    assert list(table.columns) == ["image_id", "group_id", "split", "fold"]
    assert table["image_id"].tolist() == random_manifest["image_id"].tolist()
    assert table["group_id"].tolist() == random_manifest["lesion_id"].tolist()  # no images: groups are lesions
    train = table["split"] == "train"
    assert table.loc[~train, "fold"].isna().all()
    assert sorted(table.loc[train, "fold"].unique()) == [0, 1, 2]
    assert table[train].groupby("group_id")["fold"].nunique().max() == 1
    assert info["scheme"] == "lesion" and info["seed"] == 4 and info["folds"] == 3
    assert info["fractions"] == {"train": 0.7, "val": 0.15, "test": 0.15}


def test_image_level_split_puts_one_lesion_in_several_splits(random_manifest):
    table, info = image_level_split(random_manifest, seed=0)
    assert (table["group_id"] == table["image_id"]).all()
    spread = table.groupby(random_manifest["lesion_id"].to_numpy())["split"].nunique()
    assert (spread > 1).sum() > 50  # of ~300 multi-image lesions, many straddle splits
    assert "leaky" in info["scheme"]


def test_official_scheme_keeps_the_official_parts_and_groups_images(tmp_path):
    rows = []
    for k, part in enumerate(["train"] * 6 + ["val"] * 2 + ["test"] * 2):
        path = tmp_path / f"{k}.png"
        lesion_image(k).save(path)
        rows.append({"image_id": f"I{k}", "lesion_id": f"L{k}", "dx": "nv", "path": str(path), "official_split": part})
    manifest = manifest_from(rows).assign(official_split=[r["official_split"] for r in rows])
    table, info = make_split(manifest, scheme="official", seed=0, folds=2, progress=False)
    assert table["split"].tolist() == manifest["official_split"].tolist()
    assert info["fractions"] == "official"
    assert table.loc[table["split"] == "train", "fold"].value_counts().to_dict() == {0: 3, 1: 3}

    leaking = tmp_path / "copy.png"
    lesion_image(0).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(leaking)  # a train image, flipped, filed under test
    extra = manifest_from(rows + [{"image_id": "COPY", "lesion_id": "LX", "dx": "nv", "path": str(leaking)}])
    extra = extra.assign(official_split=[r["official_split"] for r in rows] + ["test"])
    with pytest.raises(BenchboxError, match=r"official split leaks: 1 .*group L0 in \['test', 'train'\]"):
        make_split(extra, scheme="official", progress=False)


def test_bad_requests_are_refused_with_the_fix(random_manifest):
    with pytest.raises(BenchboxError, match="no official split .*'official_split'.*--scheme lesion"):
        make_split(random_manifest, scheme="official", progress=False)
    with pytest.raises(BenchboxError, match=r"summing to 1, e.g. --fractions 0.7 0.15 0.15"):
        make_split(random_manifest, fractions=(0.7, 0.2, 0.2), progress=False)
    with pytest.raises(BenchboxError, match="--folds must be at least 2"):
        make_split(random_manifest, folds=1, progress=False)
    tiny = metadata_manifest_of_lesions([3, 2], ["nv", "nv"])
    with pytest.raises(BenchboxError, match=r"split \['test'\] would hold no image \(2 leak-free group\(s\)"):
        make_split(tiny, progress=False)
    ten = metadata_manifest_of_lesions([1] * 10, ["nv"] * 10)  # 7 train groups cannot fill 8 folds
    with pytest.raises(BenchboxError, match=r"fold \[7\] would hold no image \(7 leak-free .* Use fewer folds"):
        make_split(ten, folds=8, progress=False)


def test_same_seed_same_table_other_seed_other_table(random_manifest):
    first, _ = make_split(random_manifest, seed=11, folds=3, progress=False)
    again, _ = make_split(random_manifest, seed=11, folds=3, progress=False)
    other, _ = make_split(random_manifest, seed=12, folds=3, progress=False)
    pd.testing.assert_frame_equal(first, again)
    assert (first["split"] != other["split"]).mean() > 0.2
    assert np.array_equal(first["group_id"], other["group_id"])
