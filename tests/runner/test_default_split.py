"""The fixed split `benchbox run` makes when given none: the built-in synthderm's test part is twice the usual."""

from __future__ import annotations

import pandas as pd

from benchbox.cli import main
from benchbox.data import load as load_module
from benchbox.data.load import load_dataset
from benchbox.runner.run import _default_split
from benchbox.splits.manifest import read_split


def _shares(path) -> pd.Series:
    return pd.read_csv(path)["split"].value_counts(normalize=True)


def test_the_built_in_synthderm_splits_60_10_30_and_benchbox_split_agrees(tiny_synthderm, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHBOX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(load_module, "ensure_default_synthderm", lambda: tiny_synthderm)  # the tiny one stands in
    path = _default_split(load_dataset("synthderm", progress=False))
    assert path.name.endswith("-lesion-60-10-30-seed0.csv")
    shares = _shares(path)
    assert abs(shares["test"] - 0.30) < 0.05 and abs(shares["val"] - 0.10) < 0.05 and abs(shares["train"] - 0.60) < 0.05
    out = tmp_path / "again.csv"  # `benchbox split` without --fractions makes the very same split
    assert main(["split", "synthderm", "--folds", "3", "--out", str(out)]) == 0
    assert read_split(out)[0].equals(read_split(path)[0])


def test_a_synthderm_folder_keeps_70_15_15(tiny_synthderm, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHBOX_CACHE", str(tmp_path / "cache"))
    path = _default_split(load_dataset(f"synthderm:{tiny_synthderm}", progress=False))
    assert path.name.endswith("-lesion-seed0.csv")
    shares = _shares(path)
    assert abs(shares["test"] - 0.15) < 0.05 and abs(shares["train"] - 0.70) < 0.05
