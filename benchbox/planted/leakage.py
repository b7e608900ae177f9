"""What a leaky split inflates: one method trained on a leaky split and on its lesion-grouped twin,
both scored on the same test images, with a paired lesion-clustered interval of the difference.

The twin keeps the leaky split's parts wherever that is leak-free and moves every lesion group
that crosses parts to the latest part it reaches (test > val > train): the leaky split's test
images all stay in test, so both models are scored on exactly those images, and the only change
is that the grouped model never trained on a sibling image of a test lesion. (Its training set is
smaller by those siblings, as an honest split's is.) With one image per lesion nothing crosses,
the twin trains on the same images, and the inflation is 0.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import BenchboxError
from ..labels import CLASSES, MALIGNANT_INDICES

PART_ORDER = ("train", "val", "test")  # a crossing group goes to the latest part it reaches


def grouped_twin(leaky: pd.DataFrame, groups: np.ndarray) -> pd.DataFrame:
    """The leak-free split nearest to `leaky` (image_id, group_id, split in the same row order).

    groups: the lesion / near-duplicate group of each row (splits.grouping.group_manifest)."""
    from ..splits import DROPPED

    dropped = (leaky["split"] == DROPPED).to_numpy()  # left out by --drop-leaking: stays out
    rank = leaky["split"].map({part: i for i, part in enumerate(PART_ORDER)})
    if rank[~dropped].isna().any():
        raise BenchboxError(f"leaky split: unknown part {leaky.loc[rank.isna() & ~dropped, 'split'].iloc[0]!r}; "
                            f"expected {list(PART_ORDER)}.")
    latest = rank.groupby(groups).transform("max").fillna(0).astype(int)
    split = np.where(dropped, DROPPED, np.asarray(PART_ORDER, dtype=object)[latest.to_numpy()])
    return pd.DataFrame({"image_id": leaky["image_id"].to_numpy(), "group_id": groups, "split": split})


def write_twin(leaky_path: Path, dataset, out: Path, progress: bool = True) -> tuple[Path, int]:
    """Write the grouped twin of the leaky split at `leaky_path` to `out` (with its hash and json);
    returns the path and how many images it moved to another part."""
    from ..splits.grouping import group_manifest
    from ..splits.manifest import match_dataset, read_split, write_split

    table, digest = read_split(leaky_path)
    matched, _ = match_dataset(table, dataset.manifest, leaky_path, dataset.hash)
    groups, grouping = group_manifest(dataset.manifest, progress)
    twin = grouped_twin(matched, groups)
    moved = int((twin["split"] != matched["split"]).sum())
    info = {"scheme": f"lesion-grouped twin of the leaky split {leaky_path.name} (sha256 {digest})",
            "moved_images": moved, "grouping": grouping,
            "command": f"benchbox audit {dataset.name} --split {leaky_path} --measure METHOD"}
    write_split(twin, out, info, dataset.name, dataset.hash)
    return out, moved


def paired_inflation(leaky_runs: list[pd.DataFrame], grouped_runs: list[pd.DataFrame], task: str,
                     clusters: pd.Series) -> list[dict]:
    """Leaky minus grouped on each board's primary metric, over the test images both scored.

    *_runs: one predictions frame per training seed (runner.pooling.test_predictions); clusters:
    the lesion group of each image id (the twin's group_id), so resampling keeps a lesion whole."""
    from ..metrics.config import load_config
    from ..metrics.paired import MethodOutput, compare_all_seeds
    from ..runner.job import probabilities

    shared = sorted(set.intersection(*(set(f["image_id"]) for f in leaky_runs + grouped_runs)))
    if not shared:
        raise BenchboxError("leaky and grouped runs share no scored test image; nothing to compare.")

    def outputs(frames: list[pd.DataFrame]) -> list:
        rows = [f.set_index("image_id").loc[shared].reset_index() for f in frames]
        return [MethodOutput(task, probabilities(r, task)[1]) for r in rows]

    reference = leaky_runs[0].set_index("image_id").loc[shared]
    y_class = reference["y_true"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    config = load_config()
    results = []
    for board in config.boards.values():
        if task not in board.tasks:
            continue
        labels = y_class if task == "multiclass" else np.isin(y_class, MALIGNANT_INDICES).astype(np.int64)
        for row in compare_all_seeds(board.primary, labels, {"leaky": outputs(leaky_runs), "grouped": outputs(grouped_runs)},
                                     clusters.loc[shared].to_numpy(), config):
            results.append({"board": board.name, **row})
    return results


def measure_inflation(config, out: Path, progress: bool = True) -> dict:
    """Train `config`'s single method on its leaky `config.split` and on the split's grouped twin;
    returns {"method", "leaky_run", "grouped_run", "twin_split", "moved_images", "leak", "rows", "failed"}
    (rows: paired_inflation)."""
    from ..data.load import load_dataset
    from ..registry import method_cards
    from ..runner.job import unscored_ids
    from ..runner.pooling import test_predictions
    from ..runner.run import execute, load_leaky_split
    from ..splits.manifest import read_split

    if len(config.methods) != 1:
        raise BenchboxError(f"--measure takes one method, not {config.methods}.")
    method = config.methods[0]
    dataset = load_dataset(config.data, only_present=config.only_present, on_bad_image=config.on_bad_image,
                           progress=progress, ita_correction=config.ita_correction)
    leaky_path = Path(config.split)
    _, leak = load_leaky_split(leaky_path, dataset, config.only_present)
    twin_path, moved = write_twin(leaky_path, dataset, out / "grouped_twin.csv", progress)
    arms = {"leaky": replace(config, allow_leaky_split=True, out=str(out / "leaky")),
            "grouped": replace(config, split=str(twin_path), allow_leaky_split=False, out=str(out / "grouped"))}
    codes = {name: execute(arm, progress) for name, arm in arms.items()}
    frames = {name: [test_predictions(Path(arm.out) / method / f"seed{seed}", unscored_ids(dataset.manifest))
                     for seed in arm.seeds if (Path(arm.out) / method / f"seed{seed}" / "predictions.csv").is_file()]
              for name, arm in arms.items()}
    failed = [name for name, code in codes.items() if code != 0 or not frames[name]]
    rows = []
    if not failed:
        twin, _ = read_split(twin_path)
        task = method_cards().get(method).task
        rows = paired_inflation(frames["leaky"], frames["grouped"], task, twin.set_index("image_id")["group_id"])
    return {"method": method, "leaky_run": arms["leaky"].out, "grouped_run": arms["grouped"].out,
            "twin_split": str(twin_path), "moved_images": moved, "leak": leak, "rows": rows, "failed": failed}
