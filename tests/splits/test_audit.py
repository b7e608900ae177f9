from __future__ import annotations

import re
from types import SimpleNamespace

import pandas as pd
import pytest
from PIL import Image

import benchbox.cli as cli
import benchbox.data.load
from benchbox.splits.audit import audit_split, class_balance
from benchbox.splits.build import image_level_split, make_split
from benchbox.splits.manifest import write_split

from splits_helpers import lesion_image, manifest_from


@pytest.fixture
def leaky_dataset(tmp_path):
    """10 lesions x 2 photos, plus a rotated copy of LES_0's first photo filed as lesion COPY."""
    rows = []
    for k in range(10):
        for photo in range(2):
            path = tmp_path / f"L{k}_{photo}.jpg"
            lesion_image(100 * k + photo).save(path, quality=90)
            rows.append({"image_id": f"L{k}_{photo}", "lesion_id": f"LES_{k}", "dx": "nv" if k % 2 else "mel",
                         "path": str(path)})
    copy = tmp_path / "copy.jpg"
    lesion_image(0).transpose(Image.Transpose.ROTATE_90).resize((135, 180)).save(copy, quality=85)
    rows.append({"image_id": "COPY_0", "lesion_id": "COPY", "dx": "mel", "path": str(copy)})
    return manifest_from(rows)


def test_lesion_split_is_clean_and_image_split_leaks_by_the_counted_lesions(leaky_dataset):
    clean, _ = make_split(leaky_dataset, seed=0, progress=False)
    audit = audit_split(leaky_dataset, clean, progress=False)
    assert not audit.leaky
    assert len(audit.lesion_overlaps) == len(audit.group_crossings) == len(audit.near_duplicates) == 0
    assert audit.split_sizes["images"].sum() == 21

    leaky, _ = image_level_split(leaky_dataset, seed=0)
    audit = audit_split(leaky_dataset, leaky, progress=False)
    straddling = leaky.groupby(leaky_dataset["lesion_id"].to_numpy())["split"].nunique()
    assert sorted(audit.lesion_overlaps["key"]) == sorted(straddling[straddling > 1].index)
    assert len(audit.lesion_overlaps) > 0 and audit.leaky


def test_near_duplicate_across_splits_is_reported_with_its_pair(leaky_dataset):
    table = pd.DataFrame({"image_id": leaky_dataset["image_id"], "group_id": leaky_dataset["lesion_id"]})
    table["split"] = ["train"] * 14 + ["val"] * 4 + ["test"] * 3  # COPY_0 (last) in test, L0_0 in train
    audit = audit_split(leaky_dataset, table, progress=False)
    assert len(audit.lesion_overlaps) == 0
    pairs = audit.near_duplicates
    assert pairs[["image_a", "split_a", "image_b", "split_b"]].values.tolist() == [["L0_0", "train", "COPY_0", "test"]]
    assert audit.leaky


def test_class_balance_matches_hand_count():
    labels = pd.Series(["nv", "nv", "mel", "nv", "mel", "nv"])
    splits = pd.Series(["train", "train", "train", "val", "val", "test"])
    table = class_balance(labels, splits)
    assert table.loc["nv", "all"] == pytest.approx(400 / 6)
    assert table.loc["nv", ["train", "val", "test"]].tolist() == pytest.approx([200 / 3, 50, 100])
    assert table.loc["nv", "max gap (pp)"] == pytest.approx(100 - 400 / 6)
    assert table.loc["df"].tolist() == [0, 0, 0, 0, 0]


@pytest.fixture
def run_cli(monkeypatch, leaky_dataset):
    """benchbox's CLI with the split commands, reading `leaky_dataset` for any DATA spec."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("benchbox.splits.commands",))  # only ours
    dataset = SimpleNamespace(name="toy", manifest=leaky_dataset, hash="f" * 64, split_fractions=None)
    monkeypatch.setattr(benchbox.data.load, "load_dataset", lambda spec, **options: dataset)
    return cli.main


def test_audit_command_exit_codes(tmp_path, run_cli, leaky_dataset, capsys):
    clean, info = make_split(leaky_dataset, seed=0, progress=False)
    write_split(clean, tmp_path / "clean.csv", info, "toy")
    leaky, info = image_level_split(leaky_dataset, seed=0)
    write_split(leaky, tmp_path / "leaky.csv", info, "toy")

    assert run_cli(["audit", "toy", "--split", str(tmp_path / "clean.csv")]) == 0
    out = capsys.readouterr().out
    assert "verdict: no leak found" in out and "over 21 images: 0" in out
    assert run_cli(["audit", "toy", "--split", str(tmp_path / "leaky.csv")]) == 1
    assert "verdict: LEAKY" in capsys.readouterr().out
    (tmp_path / "clean.csv").write_text((tmp_path / "clean.csv").read_text() + "EXTRA,G,train\n")
    assert run_cli(["audit", "toy", "--split", str(tmp_path / "clean.csv")]) == 2
    assert "clean.csv: its sha256" in capsys.readouterr().err


def test_split_command_writes_hashed_manifest_and_prints_counts(tmp_path, run_cli, capsys):
    out_file = tmp_path / "toy.csv"
    assert run_cli(["split", "toy", "--seed", "3", "--folds", "2", "--out", str(out_file)]) == 0
    printed = capsys.readouterr().out
    digest = (tmp_path / "toy.csv.sha256").read_text().split()[0]
    assert f"sha256 {digest}" in printed
    assert "1 pair(s) across lesion ids, merged" in printed
    table = pd.read_csv(out_file)
    counts = table["split"].value_counts()
    for split in ("train", "val", "test"):
        assert re.search(rf"\|\s*{split}\s*\|\s*{counts[split]}\s*\|", printed)
    first_bytes = out_file.read_bytes()
    assert run_cli(["split", "toy", "--seed", "3", "--folds", "2", "--out", str(out_file)]) == 0
    assert out_file.read_bytes() == first_bytes
    assert run_cli(["split", "toy", "--scheme", "official", "--out", str(out_file)]) == 2
    assert "no official split" in capsys.readouterr().err


def test_documented_regeneration_command_rebuilds_the_canonical_split(tmp_path, monkeypatch, capsys):
    from benchbox.splits.manifest import canonical_split_path

    from splits_helpers import SHARED_DATA

    root = SHARED_DATA / "ham10000_sample"
    if not (root / "HAM10000_metadata.csv").exists():
        pytest.skip("../shared/data/ham10000_sample is not present")
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("benchbox.splits.commands",))  # only ours
    out = tmp_path / "ham10000_lesion_seed0.csv"
    args = ["split", f"ham10000:{root}", "--metadata-only", "--seed", "0", "--folds", "3", "--out", str(out)]
    assert cli.main(args) == 0
    canonical = canonical_split_path("ham10000")
    assert out.read_bytes() == canonical.read_bytes()
    assert (tmp_path / "ham10000_lesion_seed0.csv.sha256").read_text().split()[0] == (
        canonical.with_name(canonical.name + ".sha256").read_text().split()[0]
    )
    assert "grouping: lesion_id only; near-duplicates: not checked" in capsys.readouterr().out
