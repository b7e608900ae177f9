import pandas as pd
import pytest

from benchbox.data.csv_table import load_csv
from benchbox.errors import BenchboxError


def _write(make_ham_layout, tmp_path, rows_edit=lambda t: t):
    root = make_ham_layout(["nv", "mel", "bcc"])
    meta = pd.read_csv(root / "HAM10000_metadata.csv")
    table = pd.DataFrame(
        {
            "image_id": meta["image_id"],
            "path": "HAM10000_images_part_1/" + meta["image_id"] + ".jpg",
            "dx": meta["dx"],
            "lesion_id": ["A", "A", "B"],
        }
    )
    path = root / "list.csv"
    rows_edit(table).to_csv(path, index=False)
    return path


def test_relative_paths_and_defaults(make_ham_layout, tmp_path):
    path = _write(make_ham_layout, tmp_path)
    manifest = load_csv(path, progress=False).manifest
    assert list(manifest["lesion_id"]) == ["A", "A", "B"]
    assert list(manifest["malignant"]) == [0, 1, 1]
    assert set(manifest["source"]) == {"list"} and set(manifest["sex"]) == {"unknown"}
    assert manifest["path"].str.startswith(str(path.parent)).all()


def test_missing_file_names_the_line(make_ham_layout, tmp_path):
    path = _write(make_ham_layout, tmp_path, lambda t: t.assign(path=[t.path[0], "nowhere.jpg", t.path[2]]))
    with pytest.raises(BenchboxError, match=r"first on line 3, column 'path'"):
        load_csv(path, progress=False)
    assert len(load_csv(path, only_present=True, progress=False).manifest) == 2
