"""The fixed split `benchbox run` makes when given none: synthderm's test part is twice the usual."""

from __future__ import annotations

import pandas as pd

from benchbox.cli import main
from benchbox.data.load import load_dataset
from benchbox.runner.run import _default_split
from benchbox.splits import DEFAULT_FRACTIONS, default_fractions
from benchbox.splits.manifest import read_split


def test_synthderm_splits_60_10_30_and_other_datasets_70_15_15():
    assert default_fractions("synthderm") == (0.60, 0.10, 0.30)
    assert default_fractions("ham10000") == default_fractions("csv") == DEFAULT_FRACTIONS == (0.70, 0.15, 0.15)


def test_the_run_split_of_a_synthderm_holds_a_30_percent_test_part(tiny_synthderm, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHBOX_CACHE", str(tmp_path / "cache"))
    dataset = load_dataset(f"synthderm:{tiny_synthderm}", progress=False)
    path = _default_split(dataset)
    assert path.name.endswith("-lesion-60-10-30-seed0.csv")
    shares = pd.read_csv(path)["split"].value_counts(normalize=True)
    assert abs(shares["test"] - 0.30) < 0.05 and abs(shares["val"] - 0.10) < 0.05 and abs(shares["train"] - 0.60) < 0.05
    # `benchbox split` without --fractions makes the very same split
    out = tmp_path / "again.csv"
    assert main(["split", f"synthderm:{tiny_synthderm}", "--folds", "3", "--out", str(out)]) == 0
    assert read_split(out)[0].equals(read_split(path)[0])
