"""A run folder where a skin-tone gap was planted to come entirely from one image source: the
report's raw gap is marked (its CI excludes 0), the source-adjusted gap beside it is not, and
the confounding table shows skin tone going with source. The metrics come from the real engine
(pooling.pool_method on the planted predictions), the tables from the real report code."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchbox.reports.boards import GAP_MARK
from benchbox.reports.runfolder import read_run
from benchbox.reports.subgroup_tables import confounding_counts, confounding_table, subgroup_spread_table
from benchbox.runner.pooling import pool_method
from benchbox.runner.run import confounding_of_test_images
from benchbox.runner.store import file_sha256

from runfolder_builder import build_run, edit_json

N_LESIONS = 1000


def planted(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(manifest, predictions): source "old_scope" holds 80 % of the dark-skinned lesions and the
    model errs on 40 % of its images; on "new_scope" it errs on 10 %; within each source light
    and dark skin are scored alike."""
    source = np.where(rng.random(N_LESIONS) < 0.5, "old_scope", "new_scope")
    dark = rng.random(N_LESIONS) < np.where(source == "old_scope", 0.6, 0.15)
    malignant = rng.random(N_LESIONS) < 0.4
    images = rng.integers(1, 3, N_LESIONS)  # 1-2 images per lesion
    lesion = np.repeat(np.arange(N_LESIONS), images)
    n = len(lesion)
    wrong = rng.random(n) < np.where(source[lesion] == "old_scope", 0.4, 0.1)
    truth = malignant[lesion]
    flagged = truth ^ wrong
    p_malignant = np.where(flagged, rng.uniform(0.55, 0.95, n), rng.uniform(0.05, 0.45, n))
    ids = [f"ISIC_{i:07d}" for i in range(n)]
    dx = np.where(truth, "mel", "nv")
    manifest = pd.DataFrame({
        "image_id": ids, "lesion_id": [f"L{k:05d}" for k in lesion], "dx": dx, "malignant": truth.astype(int),
        "source": source[lesion], "ita": np.where(dark[lesion], 10.0, 50.0), "ita_category": "",
        "age": 50.0, "sex": "female", "localization": "back", "mask_path": "",
    })
    predictions = pd.DataFrame({
        "image_id": ids, "lesion_id": manifest["lesion_id"], "split": "test", "y_true": dx,
        "p_benign": 1 - p_malignant, "p_malignant": p_malignant,
    })
    return manifest, predictions


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = build_run(tmp_path_factory.mktemp("adjusted"), methods=("xception",), failed=())
    manifest, predictions = planted(np.random.default_rng(19))
    seed_dir = root / "xception" / "seed0"
    predictions.to_csv(seed_dir / "predictions.csv", index=False)
    edit_json(seed_dir / "metrics.json", lambda m: m.update(threshold=0.5))
    pool_method(root, "xception", "binary", [0], manifest)
    confounding = confounding_of_test_images(manifest, predictions[["image_id", "split"]])
    edit_json(root / "run.json", lambda r: (r.update(confounding=confounding),
                                            r.setdefault("files", {}).update({"xception/metrics.json": file_sha256(
                                                root / "xception" / "metrics.json")})))
    return root


def test_a_gap_planted_in_one_source_is_marked_raw_and_not_when_adjusted(run_dir):
    metrics = json.loads((run_dir / "xception" / "metrics.json").read_text())["metrics"]
    raw = metrics["subgroup.ita_light_dark.binary.sensitivity.gap.dark"]
    adjusted = metrics["subgroup.ita_light_dark.binary.sensitivity.adjusted_gap.dark"]
    assert raw["ci_high"] < 0  # dark skin looks worse ...
    assert adjusted["ci_low"] < 0 < adjusted["ci_high"]  # ... but not within either source
    assert "pooled over 2 of 2 sources" in adjusted["reason"]
    assert "subgroup.source.binary.sensitivity.adjusted_gap.old_scope" not in metrics  # source is not adjusted for itself

    table = subgroup_spread_table(read_run(run_dir))
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]): line.split("|")[3]
            for line in table.splitlines()[2:]}
    assert GAP_MARK in rows[("ita_light_dark", "binary.sensitivity")]
    adjusted_cell = rows[("ita_light_dark", "binary.sensitivity, source-adjusted")]
    assert "(dark)" in adjusted_cell and GAP_MARK not in adjusted_cell


def test_the_report_shows_that_skin_tone_goes_with_source(run_dir):
    run = read_run(run_dir)
    entry = run.info["confounding"]["ita_light_dark"]["source"]
    counts = pd.DataFrame(entry["counts"], index=entry["rows"], columns=entry["columns"])
    assert counts.loc["dark", "old_scope"] > 2 * counts.loc["dark", "new_scope"]
    # Cramér's V of a 2 x 2 table is |phi|, computed by hand from the counts
    a, b, c, d = counts.loc["dark", "new_scope"], counts.loc["dark", "old_scope"], counts.loc["light", "new_scope"], \
        counts.loc["light", "old_scope"]
    phi = (a * d - b * c) / np.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    assert entry["cramers_v"] == pytest.approx(abs(phi))
    table = confounding_table(run)
    assert f"{abs(phi):.2f}" in next(line for line in table.splitlines() if line.startswith("| ita_light_dark"))
    assert "old_scope" in confounding_counts(run, "ita_light_dark")


def test_an_undefined_association_read_back_from_json_reads_nan_with_its_reason(run_dir, tmp_path):
    """run.json stores NaN as null (strict JSON); a table with one source (ISIC 2018's sample) has no Cramér's V."""
    import shutil

    copy = shutil.copytree(run_dir, tmp_path / "run")
    entry = {"rows": ["dark", "light"], "columns": ["isic"], "counts": [[3], [4]], "n": 7, "n_missing": 0,
             "cramers_v": None, "chi2_p": None, "reason": "one source only"}
    edit_json(copy / "run.json", lambda r: r["confounding"]["ita_light_dark"].update(source=entry))
    row = next(line for line in confounding_table(read_run(copy)).splitlines() if line.startswith("| ita_light_dark"))
    assert "NaN (one source only)" in row
