"""A plain-text description of a dataset: what is there, how it is distributed, what is missing."""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from ..labels import CLASSES
from .dataset import Dataset
from .ita import ITA_CATEGORIES, LIGHT_DARK_CUT


def _counts(series: pd.Series, order=None) -> list[list]:
    counts = series.value_counts()
    keys = [k for k in order if k in counts] if order is not None else counts.index
    total = len(series)
    return [[key, int(counts[key]), f"{100 * counts[key] / total:.1f}%"] for key in keys]


def skin_tone_by_source(manifest: pd.DataFrame) -> list[list]:
    """Per source: images, ITA quartiles, the share above 90 degrees (b* < 0: not a skin colour),
    the share "dark" (ITA <= the light/dark cut) and how many images have no ITA."""
    rows = []
    for source, group in manifest.groupby(manifest["source"].replace("", "(no source)"), sort=True):
        ita = group["ita"].dropna()
        quartiles = " / ".join(f"{q:.1f}" for q in ita.quantile([0.25, 0.5, 0.75])) if len(ita) else "—"
        share = (lambda mask: f"{100 * mask.mean():.1f}%") if len(ita) else (lambda mask: "—")
        rows.append([source, len(group), quartiles, share(ita > 90), share(ita <= LIGHT_DARK_CUT),
                     int(group["ita"].isna().sum())])
    return rows


def describe(dataset: Dataset) -> str:
    m = dataset.manifest
    images_per_lesion = m.groupby("lesion_id").size()
    lines = [
        f"dataset: {dataset.name} at {dataset.root}",
        f"hash: {dataset.hash}",
        f"images: {len(m):,}   lesions: {m['lesion_id'].nunique():,}   "
        f"lesions with >1 image: {int((images_per_lesion > 1).sum()):,} (max {int(images_per_lesion.max())} images)",
        f"masks: {int((m['mask_path'] != '').sum()):,} of {len(m):,}",
        "",
    ]
    tables = [
        ("class", _counts(m["dx"], CLASSES)),
        ("source", _counts(m["source"])),
        ("ITA category", _counts(m["ita_category"], [name for name, _ in ITA_CATEGORIES])),
        ("sex", _counts(m["sex"])),
    ]
    for title, rows in tables:
        lines += [tabulate(rows, headers=[title, "images", "share"], tablefmt="github"), ""]
    lines += [tabulate(skin_tone_by_source(m), tablefmt="github", headers=[
        "source", "images", "ITA quartiles (°)", "ITA > 90°", f"dark (ITA ≤ {LIGHT_DARK_CUT:g})", "no ITA"]), ""]
    missing = {
        "age": int(m["age"].isna().sum()),
        "sex": int((m["sex"].isin(["", "unknown"])).sum()),
        "localization": int((m["localization"].isin(["", "unknown"])).sum()),
        "mask": int((m["mask_path"] == "").sum()),
    }
    lines.append("missing values: " + ", ".join(f"{k} {v:,}" for k, v in missing.items()))
    lines += [f"note: {note}" for note in dataset.notes]
    return "\n".join(lines)
