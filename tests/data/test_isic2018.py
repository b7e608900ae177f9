import pandas as pd
import pytest

from benchbox.data.isic2018 import load_isic2018
from benchbox.errors import BenchboxError


def test_reads_the_real_test_sample_with_official_split(isic_sample):
    dataset = load_isic2018(isic_sample, progress=False)
    manifest = dataset.manifest
    truth = pd.read_csv(isic_sample / "ISIC2018_Task3_Test_GroundTruth.csv").set_index("image")
    assert len(manifest) == 35 and set(manifest["official_split"]) == {"test"}
    expected = truth.idxmax(axis=1).str.lower()
    assert (manifest.set_index("image_id")["dx"] == expected.loc[manifest["image_id"]]).all()
    assert (manifest["lesion_id"] == manifest["image_id"]).all()
    assert any("treated as its own lesion" in note for note in dataset.notes)


def _copy_sample(isic_sample, tmp_path, edit):
    root = tmp_path / "isic"
    (root / "ISIC2018_Task3_Test_Input").mkdir(parents=True)
    for image in (isic_sample / "ISIC2018_Task3_Test_Input").iterdir():
        (root / "ISIC2018_Task3_Test_Input" / image.name).symlink_to(image)
    table = pd.read_csv(isic_sample / "ISIC2018_Task3_Test_GroundTruth.csv")
    edit(table).to_csv(root / "ISIC2018_Task3_Test_GroundTruth.csv", index=False)
    return root


def test_a_row_that_is_not_one_hot_is_named(isic_sample, tmp_path):
    def blur(table):
        table.loc[3, ["MEL", "NV"]] = [0.5, 0.5]
        return table

    root = _copy_sample(isic_sample, tmp_path, blur)
    with pytest.raises(BenchboxError, match=r"line 5 \(image ISIC_\d+\) is not one-hot"):
        load_isic2018(root, progress=False)


def test_lesion_groupings_are_used_when_present(isic_sample, tmp_path):
    root = _copy_sample(isic_sample, tmp_path, lambda t: t)
    images = pd.read_csv(root / "ISIC2018_Task3_Test_GroundTruth.csv")["image"]
    pd.DataFrame({"image": images[:2], "lesion_id": ["L1", "L1"], "diagnosis_confirm_type": "histopathology"}).to_csv(
        root / "ISIC2018_Task3_Training_LesionGroupings.csv", index=False
    )
    manifest = load_isic2018(root, progress=False).manifest.set_index("image_id")
    assert manifest.loc[images[0], "lesion_id"] == manifest.loc[images[1], "lesion_id"] == "L1"
    assert manifest.loc[images[0], "dx_type"] == "histopathology"
    assert manifest.loc[images[2], "lesion_id"] == images[2]


def test_missing_images_are_counted(isic_sample, tmp_path):
    root = _copy_sample(isic_sample, tmp_path, lambda t: t)
    first = sorted((root / "ISIC2018_Task3_Test_Input").iterdir())[0]
    first.unlink()
    with pytest.raises(BenchboxError, match=r"1 are not in .*--only-present"):
        load_isic2018(root, progress=False)
    assert len(load_isic2018(root, only_present=True, progress=False).manifest) == 34
