"""--drop-leaking: an official split whose parts share a lesion/near-duplicate group drops the
val/test side (train > val > test), records why in the json, and stays hashed and leak-free."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pandas as pd
import pytest
from PIL import Image

import benchbox.cli as cli
import benchbox.data.load
from benchbox.errors import BenchboxError
from benchbox.splits.audit import audit_split
from benchbox.splits.build import make_split
from benchbox.splits.grouping import near_duplicate_pairs, perceptual_hashes
from benchbox.splits.manifest import (
    crossings,
    dropped_images,
    load_split,
    read_split,
    sidecar_paths,
    split_csv_bytes,
    write_split,
)

from splits_helpers import lesion_image, manifest_from

PARTS = ["train"] * 8 + ["val"] * 3 + ["test"] * 3  # T0..T7, V0..V2, S0..S2: 14 distinct lesions


def official_dataset(tmp_path, extra: list[tuple[str, str, str, Image.Image]] = ()) -> pd.DataFrame:
    """14 distinct one-image lesions in ISIC 2018-like official parts, plus `extra` rows
    (image_id, lesion_id, official part, picture) written to tmp_path."""
    rows = []
    names = [f"T{k}" for k in range(8)] + [f"V{k}" for k in range(3)] + [f"S{k}" for k in range(3)]
    pictures = [lesion_image(k) for k in range(len(names))]
    entries = [(name, f"L_{name}", part, picture) for name, part, picture in zip(names, PARTS, pictures)]
    for k, (image_id, lesion_id, part, picture) in enumerate(entries + list(extra)):
        path = tmp_path / f"{image_id}.jpg"
        picture.save(path, quality=90)
        rows.append({"image_id": image_id, "lesion_id": lesion_id, "dx": "nv" if k % 2 else "mel",
                     "path": str(path), "official_split": part})
    return manifest_from(rows)


def flipped(seed: int) -> Image.Image:
    """lesion_image(seed) flipped top-bottom and rescaled: a near-duplicate of it."""
    return lesion_image(seed).transpose(Image.Transpose.FLIP_TOP_BOTTOM).resize((150, 112))


def bits_between(manifest: pd.DataFrame, a: str, b: str) -> int:
    """The near-duplicate distance of two manifest images, computed here from their files."""
    paths = manifest.set_index("image_id").loc[[a, b], "path"].tolist()
    pairs = near_duplicate_pairs(perceptual_hashes(paths, progress=False), progress=False)
    assert pairs[:, :2].tolist() == [[0, 1]]
    return int(pairs[0, 2])


@pytest.fixture
def train_val_leak(tmp_path):
    """The real-data case: a val image that is T0 flipped, filed under another lesion id."""
    return official_dataset(tmp_path, [("V_COPY", "L_X_COPY", "val", flipped(0))])


@pytest.fixture
def run_cli(monkeypatch):
    """benchbox's CLI with the split commands; `use(manifest)` makes it read that manifest for any DATA."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("benchbox.splits.commands",))

    def use(manifest):
        dataset = SimpleNamespace(name="toy", manifest=manifest, hash="f" * 64, split_fractions=None)
        monkeypatch.setattr(benchbox.data.load, "load_dataset", lambda spec, **options: dataset)
        return cli.main

    return use


def test_without_the_flag_the_leaking_official_split_is_refused_naming_drop_leaking(train_val_leak):
    with pytest.raises(BenchboxError) as refused:
        make_split(train_val_leak, scheme="official", progress=False)
    message = str(refused.value)
    assert "the official split leaks: 1 lesion/near-duplicate group(s)" in message
    assert "group L_T0 in ['train', 'val']" in message
    # what `benchbox run` (whose default split this is) shows the user to do instead
    fix = "`benchbox split DATA --scheme official --drop-leaking --out FILE`, then `benchbox run ... --split FILE`"
    assert fix in message


def test_drop_leaking_drops_exactly_the_val_copy_and_records_why(tmp_path, train_val_leak):
    table, info = make_split(train_val_leak, scheme="official", progress=False, drop_leaking=True)
    official = train_val_leak["official_split"]
    assert table.loc[table["split"] == "dropped", "image_id"].tolist() == ["V_COPY"]
    assert (table["split"] == official)[table["image_id"] != "V_COPY"].all()  # nothing else moves
    assert table.set_index("image_id").loc["V_COPY", "group_id"] == "L_T0"  # its real group, kept in the CSV
    expected = {
        "image_id": "V_COPY",
        "lesion_id": "L_X_COPY",
        "group_id": "L_T0",
        "part": "val",
        "kept_part": "train",
        "duplicates": [
            {"image_id": "T0", "part": "train", "by": "near-duplicate",
             "bits": bits_between(train_val_leak, "T0", "V_COPY")}
        ],
    }
    assert info["dropped_images"] == [expected]
    assert 0 <= expected["duplicates"][0]["bits"] <= 40
    assert "train > val > test" in info["drop_leaking"]

    path = tmp_path / "official.csv"
    digest = write_split(table, path, {**info, "command": "benchbox split toy --drop-leaking"}, "toy")
    record = json.loads(sidecar_paths(path)[1].read_text())
    assert record["dropped_images"] == [expected]
    assert record["counts"] == {"train": 8, "val": 3, "test": 3, "dropped": 1}
    assert dropped_images(path) == [expected]
    # the drop is part of the hashed identity: the CSV differs from the official parts' in that one row
    lines = path.read_text().splitlines()
    assert "V_COPY,L_T0,dropped" in lines
    as_official = split_csv_bytes(table.assign(split=official.to_numpy()))
    assert as_official.decode().splitlines() == [line.replace("dropped", "val") for line in lines]
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() != hashlib.sha256(as_official).hexdigest()

    loaded = load_split(path, train_val_leak)
    assert loaded.sha256 == digest
    assert loaded.table["image_id"].tolist() == train_val_leak["image_id"].tolist()  # every image, manifest order
    assert loaded.table["split"].value_counts().to_dict() == {"train": 8, "val": 3, "test": 3, "dropped": 1}
    in_parts = loaded.table[loaded.table["split"] != "dropped"]
    assert in_parts.groupby("group_id")["split"].nunique().max() == 1
    assert len(crossings(loaded.table["group_id"], loaded.table["split"])) == 0

    audit = audit_split(train_val_leak, loaded.table, progress=False, dropped=dropped_images(path))
    assert not audit.leaky and len(audit.near_duplicates) == 0
    assert audit.dropped.to_dict("records") == [
        {"image_id": "V_COPY", "part": "val", "group_id": "L_T0",
         "duplicates": f"T0 (train, near-duplicate, {expected['duplicates'][0]['bits']} bits)"}
    ]
    assert audit.split_sizes["images"].tolist() == [8, 3, 3]


def test_cli_split_and_audit_with_drop_leaking(tmp_path, run_cli, train_val_leak, capsys):
    main = run_cli(train_val_leak)
    out = tmp_path / "isic.csv"
    assert main(["split", "toy", "--scheme", "official", "--out", str(out)]) == 2
    assert "Pass --drop-leaking" in capsys.readouterr().err and not out.exists()

    assert main(["split", "toy", "--scheme", "official", "--drop-leaking", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dropped 1 leaking image(s) (val 1)" in printed and "isic.csv.json" in printed
    assert "| val     |        3 |" in printed  # the table counts the 3 val images that stay
    command = json.loads(sidecar_paths(out)[1].read_text())["command"]
    assert command == f"benchbox split toy --scheme official --seed 0 --drop-leaking --out {out}"

    assert main(["audit", "toy", "--split", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "images dropped by --drop-leaking (in no split; each duplicates an image of an earlier official " \
           "part, train > val > test): 1 (val 1)" in printed
    assert "| V_COPY     | val    | L_T0       | T0 (train, near-duplicate," in printed
    assert "verdict: no leak found" in printed

    assert main(["split", "toy", "--drop-leaking", "--out", str(tmp_path / "lesion.csv")]) == 2
    assert "--drop-leaking applies to --scheme official only" in capsys.readouterr().err


def test_val_test_duplicates_are_dropped_from_test_and_chains_name_their_link(tmp_path):
    manifest = official_dataset(
        tmp_path,
        [
            ("S_COPY", "L_XS", "test", flipped(8)),  # V0 (seed 8) flipped, filed under test
            ("S_SIBLING", "L_V1", "test", lesion_image(50)),  # another photo of lesion L_V1 (val), in test
            ("V_COPY", "L_XV", "val", flipped(1)),  # T1 flipped, in val ...
            ("V_SIBLING", "L_XV", "val", lesion_image(51)),  # ... and another photo of that lesion
        ],
    )
    table, info = make_split(manifest, scheme="official", progress=False, drop_leaking=True)
    assert table.loc[table["split"] == "dropped", "image_id"].tolist() == ["S_COPY", "S_SIBLING", "V_COPY", "V_SIBLING"]
    assert table.set_index("image_id").loc[["V0", "V1", "T1"], "split"].tolist() == ["val", "val", "train"]
    records = {r["image_id"]: r for r in info["dropped_images"]}
    assert [r["image_id"] for r in info["dropped_images"]] == ["S_COPY", "S_SIBLING", "V_COPY", "V_SIBLING"]
    assert records["S_COPY"]["duplicates"] == [
        {"image_id": "V0", "part": "val", "by": "near-duplicate", "bits": bits_between(manifest, "V0", "S_COPY")}
    ]
    assert (records["S_COPY"]["part"], records["S_COPY"]["kept_part"]) == ("test", "val")
    assert records["S_SIBLING"]["duplicates"] == [{"image_id": "V1", "part": "val", "by": "lesion_id", "bits": None}]
    assert records["V_COPY"]["kept_part"] == "train" and records["V_COPY"]["group_id"] == "L_T1"
    # V_SIBLING reaches train only through V_COPY (dropped too): its record names that link
    assert records["V_SIBLING"]["duplicates"] == [
        {"image_id": "V_COPY", "part": "val", "by": "lesion_id", "bits": None}
    ]
    path = tmp_path / "s.csv"
    write_split(table, path, info, "toy")
    loaded = load_split(path, manifest)
    assert len(crossings(loaded.table["group_id"], loaded.table["split"])) == 0
    assert not audit_split(manifest, loaded.table, progress=False, dropped=dropped_images(path)).leaky


def test_with_nothing_leaking_the_flag_changes_only_the_recorded_empty_list(tmp_path):
    manifest = official_dataset(tmp_path)
    plain, plain_info = make_split(manifest, scheme="official", folds=2, progress=False)
    flagged, flagged_info = make_split(manifest, scheme="official", folds=2, progress=False, drop_leaking=True)
    pd.testing.assert_frame_equal(plain, flagged)
    assert split_csv_bytes(plain) == split_csv_bytes(flagged)  # same sha256
    extra = {k: v for k, v in flagged_info.items() if k not in plain_info}
    assert flagged_info == {**plain_info, **extra} and set(extra) == {"drop_leaking", "dropped_images"}
    assert extra["dropped_images"] == []
    write_split(plain, tmp_path / "plain.csv", plain_info, "toy")
    write_split(flagged, tmp_path / "flagged.csv", flagged_info, "toy")
    assert dropped_images(tmp_path / "plain.csv") == dropped_images(tmp_path / "flagged.csv") == []
    assert json.loads(sidecar_paths(tmp_path / "flagged.csv")[1].read_text())["counts"]["dropped"] == 0


def test_drop_records_must_match_the_hashed_csv(tmp_path, train_val_leak):
    table, info = make_split(train_val_leak, scheme="official", progress=False, drop_leaking=True)
    path = tmp_path / "s.csv"
    with pytest.raises(BenchboxError, match=r"s\.csv: the rows with split 'dropped' and the 'dropped_images' .*"
                       r"\(1 dropped in the CSV only, e\.g\. V_COPY\)"):
        write_split(table, path, {**info, "dropped_images": []}, "toy")
    write_split(table, path, {**info, "command": "benchbox split toy --drop-leaking --out s.csv"}, "toy")
    json_path = sidecar_paths(path)[1]
    record = json.loads(json_path.read_text())
    json_path.write_text(json.dumps({**record, "dropped_images": [{**info["dropped_images"][0], "image_id": "T3"}]}))
    with pytest.raises(BenchboxError, match=r"\(1 dropped in the CSV only, e\.g\. V_COPY\) \(1 listed in the json "
                       r"only, e\.g\. T3\): the json does not describe this CSV"):
        dropped_images(path)
    json_path.unlink()
    with pytest.raises(BenchboxError, match=r"s\.csv: it drops 1 image\(s\) but s\.csv\.json, which says why, "
                       r"cannot be read"):
        dropped_images(path)
    assert read_split(path)[0]["split"].tolist().count("dropped") == 1  # the CSV alone stays readable


def test_real_images_through_the_isic2018_adapter(tmp_path, capsys, monkeypatch):
    """An ISIC 2018 layout of real images (HAM10000 photos as Training and Validation, the ISIC 2018
    test sample as Test) with one Validation file that is a training photo turned, rescaled and
    recompressed: the adapter's official split is refused, and --drop-leaking drops exactly it."""
    from splits_helpers import SHARED_DATA

    ham, isic = SHARED_DATA / "ham10000_sample" / "HAM10000_images_part_1", SHARED_DATA / "isic2018_sample"
    if not (ham.is_dir() and (isic / "ISIC2018_Task3_Test_GroundTruth.csv").is_file()):
        pytest.skip("../shared/data/ham10000_sample and isic2018_sample are not present")
    photos = sorted(ham.glob("*.jpg"))[:24]
    columns = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    root = tmp_path / "isic2018"
    parts = {"Training": photos[:18], "Validation": photos[18:]}
    for part, files in parts.items():
        folder = root / f"ISIC2018_Task3_{part}_Input"
        folder.mkdir(parents=True)
        for photo in files:
            (folder / photo.name).write_bytes(photo.read_bytes())
        names = [p.stem for p in files]
        if part == "Validation":  # the leak: training photo 0, turned, rescaled and recompressed
            Image.open(photos[0]).transpose(Image.Transpose.ROTATE_270).resize((300, 300)).save(
                folder / "ISIC_9999999.jpg", quality=80
            )
            names.append("ISIC_9999999")
        truth = pd.DataFrame(0.0, index=range(len(names)), columns=columns)
        truth[columns[0]] = 1.0
        truth.insert(0, "image", names)
        truth.to_csv(root / f"ISIC2018_Task3_{part}_GroundTruth.csv", index=False)
    (root / "ISIC2018_Task3_Test_Input").symlink_to(isic / "ISIC2018_Task3_Test_Input")
    (root / "ISIC2018_Task3_Test_GroundTruth.csv").symlink_to(isic / "ISIC2018_Task3_Test_GroundTruth.csv")

    monkeypatch.setattr(cli, "COMMAND_MODULES", ("benchbox.splits.commands",))
    out = tmp_path / "official.csv"
    assert cli.main(["split", f"isic2018:{root}", "--scheme", "official", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"group {photos[0].stem} in ['train', 'val']" in err and "--drop-leaking" in err
    assert cli.main(["split", f"isic2018:{root}", "--scheme", "official", "--drop-leaking", "--out", str(out)]) == 0
    assert "dropped 1 leaking image(s) (val 1)" in capsys.readouterr().out
    (record,) = dropped_images(out)
    assert (record["image_id"], record["part"], record["group_id"]) == ("ISIC_9999999", "val", photos[0].stem)
    assert [(d["image_id"], d["by"]) for d in record["duplicates"]] == [(photos[0].stem, "near-duplicate")]
    assert record["duplicates"][0]["bits"] <= 40
    counts = json.loads(sidecar_paths(out)[1].read_text())["counts"]
    assert counts == {"train": 18, "val": 6, "test": 35, "dropped": 1}
    assert cli.main(["audit", f"isic2018:{root}", "--split", str(out)]) == 0
    assert "verdict: no leak found" in capsys.readouterr().out
