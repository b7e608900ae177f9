"""Skin tone before and after colour correction, per image source: what `--ita-correction` does.

    python benchmarks/skin_tone.py [--out leaderboards/skin_tone.md]

1. synthderm (the built-in dataset), the known answer: each image's planted skin ITA against the
   ITA measured uncorrected, after plain per-image Shades of Gray, and after benchbox's
   per-source correction, per site.
2. Real HAM10000 images (../shared/data/ham10000_more, 1,000 images of four sources; skipped when
   absent): per source, the ITA quartiles, the share above 90 degrees (b* < 0: not a skin
   colour) and the share "dark" under each correction, and the spread of the per-source medians.
   "source, no validity rule" counts every usable pixel, so the share above 90 degrees shows what
   the correction alone does; the default also leaves out pixels that cannot be skin.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchbox.data import ita  # noqa: E402
from benchbox.data.dataset import ANALYSIS_SIZE  # noqa: E402
from benchbox.data.load import ensure_default_synthderm, load_dataset  # noqa: E402
from benchbox.data.synthderm import TRUTH_FILE  # noqa: E402
from benchbox.reports.boards import markdown_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HAM_MORE = ROOT.parent / "shared" / "data" / "ham10000_more"
READINGS = {"uncorrected": "none", "per-image Shades of Gray": "image", "per source (benchbox)": "source"}


def measured(spec: str, correction: str, validity: bool = True, only_present: bool = False) -> pd.DataFrame:
    """image_id, source, ita for one dataset under one correction."""
    dataset = load_dataset(spec, only_present=only_present, ita_correction=correction)
    manifest = dataset.manifest
    if not validity:  # recompute without the validity rule (the loader always applies it)
        images, masks = dataset.arrays(ANALYSIS_SIZE)
        has_mask = (manifest["mask_path"] != "").to_numpy()
        image_masks = [masks[i] if masks is not None and has_mask[i] else None for i in range(len(images))]
        values, _, _ = ita.skin_tones(images, image_masks, manifest["source"].to_numpy(dtype=object), correction,
                                      validity=False)
        manifest = manifest.assign(ita=values)
    return manifest[["image_id", "source", "ita"]]


def synthderm_table() -> str:
    truth = pd.read_csv(ensure_default_synthderm() / TRUTH_FILE).set_index("image_id")["ita"]
    columns = {}
    for label, correction in READINGS.items():
        frame = measured("synthderm", correction)
        error = frame["ita"].to_numpy() - truth.loc[frame["image_id"]].to_numpy()
        columns[label] = pd.Series(error).groupby(frame["source"].to_numpy())
        sites = frame["source"].value_counts().sort_index()
    rows = [[site, int(sites[site]), *(f"{g.get_group(site).abs().median():.2f} ({g.get_group(site).median():+.2f})"
                                      for g in columns.values())] for site in sites.index]
    return markdown_table(rows, ["site", "images", *(f"{label}: median abs. error (median error), °"
                                                     for label in READINGS)])


def ham_table() -> tuple[str, dict[str, float]]:
    spec = f"ham10000:{HAM_MORE}"
    readings = {**READINGS, "per source, no validity rule": ("source", False)}
    rows, spreads = [], {}
    for label, reading in readings.items():
        correction, validity = reading if isinstance(reading, tuple) else (reading, True)
        frame = measured(spec, correction, validity, only_present=True)
        medians = {}
        for source, group in frame.groupby("source"):
            values = group["ita"].dropna()
            medians[source] = values.median()
            rows.append([label, source, len(group), " / ".join(f"{q:.1f}" for q in values.quantile([0.25, 0.5, 0.75])),
                         f"{100 * (values > 90).mean():.1f}%", f"{100 * (values <= ita.LIGHT_DARK_CUT).mean():.1f}%",
                         int(group["ita"].isna().sum())])
        spreads[label] = max(medians.values()) - min(medians.values())
    table = markdown_table(rows, ["correction", "source", "images", "ITA quartiles (°)", "ITA > 90°",
                                  f"dark (ITA ≤ {ita.LIGHT_DARK_CUT:g})", "no ITA"])
    return table, spreads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "leaderboards" / "skin_tone.md")
    args = parser.parse_args()
    parts = ["# Skin tone before and after colour correction",
             "Written by `python benchmarks/skin_tone.py`. Why and how benchbox corrects colour before "
             "measuring ITA: `benchbox/data/ita.py`; the README, \"Data\".",
             "## synthderm: measured against planted skin ITA",
             "Each site's light (bluish to reddish, like HAM10000's sources) is applied after the skin's "
             "planted ITA, so the uncorrected error is the site's cast.", synthderm_table()]
    if HAM_MORE.is_dir():
        table, spreads = ham_table()
        parts += ["## Real HAM10000 images (ham10000_more, 1,000 images)", table,
                  "Spread of the per-source median ITA (max − min): "
                  + "; ".join(f"{label} {spread:.1f}°" for label, spread in spreads.items()) + "."]
    else:
        parts.append(f"(No real images: {HAM_MORE} is absent.)")
    args.out.write_text("\n\n".join(parts) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
