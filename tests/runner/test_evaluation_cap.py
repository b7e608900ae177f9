import numpy as np
import pandas as pd

from benchbox.runner.run import cap_evaluation_images


def _table():
    rng = np.random.default_rng(0)
    groups = [f"g{i}" for i in range(300) for _ in range(rng.integers(1, 4))]
    split = np.where(np.arange(len(groups)) < 400, "train", np.where(np.arange(len(groups)) < 500, "val", "test"))
    table = pd.DataFrame({"image_id": [f"i{i}" for i in range(len(groups))], "group_id": groups, "split": split})
    # keep groups inside one split, as a real split manifest does
    table["split"] = table.groupby("group_id")["split"].transform("first")
    return table


def test_cap_takes_whole_groups_of_val_and_test_and_keeps_train():
    table = _table()
    capped = cap_evaluation_images(table, 40)
    assert (capped["split"] == "train").sum() == (table["split"] == "train").sum()
    for split in ("val", "test"):
        rows = capped[capped["split"] == split]
        assert 40 <= len(rows) <= 42  # the group that crosses the cap is kept whole (groups have <= 3 images)
        full = table[table["group_id"].isin(rows["group_id"])]
        assert len(full) == len(rows)
    assert cap_evaluation_images(table, 40).equals(capped)  # seeded
    assert cap_evaluation_images(table, None) is table
