"""A loaded dataset: its manifest, content hash, skin tone per image, and cached decoded arrays."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..errors import BenchboxError
from ..labels import CLASS_INDEX
from ..paths import atomic_write, cache_dir
from .arrays import ImageSet
from .image_cache import BadImageError, cached_arrays, decode_resized, file_hashes
from .ita import DEFAULT_CORRECTION, SKIN_TONE_NOTE, ita_category, skin_tones
from .manifest import manifest_hash

ANALYSIS_SIZE = 128  # resolution at which skin tone is measured


@dataclass
class Dataset:
    """A dataset ready for splitting and training. `hash` covers ids, labels and file contents."""

    name: str
    root: Path
    manifest: pd.DataFrame
    hash: str
    image_hashes: list[str] = field(repr=False)
    mask_hashes: list[str] = field(repr=False)
    notes: list[str] = field(default_factory=list)
    split_fractions: tuple[float, float, float] | None = None  # of its fixed lesion split; None: splits.DEFAULT_FRACTIONS

    @property
    def has_masks(self) -> bool:
        return bool((self.manifest["mask_path"] != "").any())

    def arrays(self, size: int, progress: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """All images (N x size x size x 3 uint8) and masks (bool or None), in manifest order."""
        return cached_arrays(
            self.manifest["path"].tolist(),
            self.manifest["mask_path"].tolist(),
            self.image_hashes,
            self.mask_hashes,
            size,
            progress=progress,
        )

    def image_set(self, image_ids, size: int, groups=None, progress: bool = True) -> ImageSet:
        """The images `image_ids` (in that order) as an ImageSet at `size` px."""
        images, masks = self.arrays(size, progress=progress)
        position = pd.Series(np.arange(len(self.manifest)), index=self.manifest["image_id"])
        index = position.loc[list(image_ids)].to_numpy()
        rows = self.manifest.iloc[index]
        return ImageSet(
            image_ids=rows["image_id"].to_numpy(),
            images=images[index],
            labels=rows["dx"].map(CLASS_INDEX).to_numpy(dtype=np.int64),
            groups=np.asarray(groups) if groups is not None else rows["lesion_id"].to_numpy(),
            masks=None if masks is None else masks[index],
            ita=rows["ita"].to_numpy(dtype=float) if "ita" in rows else None,
        )


def _drop_unreadable(manifest: pd.DataFrame, on_bad_image: str, notes: list[str]) -> pd.DataFrame:
    """Decode every image as the skin-tone pass does (so a file is bad here exactly when it failed
    there); fail on the first bad one or drop them all (`skip`), naming each with its reason."""
    bad = []
    for row in tqdm(manifest.itertuples(), total=len(manifest), desc="checking images", unit="img"):
        try:
            decode_resized(row.path, ANALYSIS_SIZE)
            if row.mask_path:
                decode_resized(row.mask_path, ANALYSIS_SIZE, is_mask=True)
        except BadImageError as error:
            if on_bad_image == "fail":
                raise
            bad.append((row.image_id, error.path, error.reason))
    if bad:
        listed = ", ".join(f"{image_id} ({path}: {reason})" for image_id, path, reason in bad[:5])
        notes.append(f"skipped {len(bad)} unreadable image(s): {listed}")
        manifest = manifest[~manifest["image_id"].isin([b[0] for b in bad])].reset_index(drop=True)
    return manifest


def _skin_tones(dataset: Dataset, correction: str, progress: bool) -> tuple[np.ndarray, dict[str, str], dict]:
    """ITA per image after `correction`, why for each image whose ITA is NaN, and the per-source
    lights; cached under the dataset hash and the correction."""
    path = cache_dir() / "ita" / f"{dataset.hash[:32]}.{correction}.v3.json"  # v3: colour-corrected, validity rules
    ids = dataset.manifest["image_id"]
    if path.exists():
        stored = json.loads(path.read_text())
        values = np.array([np.nan if stored["ita"][i] is None else stored["ita"][i] for i in ids], dtype=float)
        return values, {i: stored["reasons"][i] for i in ids if i in stored["reasons"]}, stored["lights"]
    images, masks = dataset.arrays(ANALYSIS_SIZE, progress=progress)
    has_mask = (dataset.manifest["mask_path"] != "").to_numpy()
    image_masks = [masks[i] if masks is not None and has_mask[i] else None for i in range(len(images))]
    values, why, lights = skin_tones(images, image_masks, dataset.manifest["source"].to_numpy(dtype=object), correction)
    reasons = {image_id: reason for image_id, reason in zip(ids, why) if reason}
    record = {"ita": {i: (None if np.isnan(v) else v) for i, v in zip(ids, values.tolist())}, "reasons": reasons,
              "lights": lights}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record)))
    return values, reasons, lights


def _correction_note(correction: str, lights: dict) -> str:
    """What the skin tones are measured on, for the dataset's notes (and so every report header)."""
    if correction == "none":
        return f"{SKIN_TONE_NOTE}uncorrected pixels (--ita-correction none), as the papers that report ITA measured it"
    if correction == "image":
        return (f"{SKIN_TONE_NOTE}after plain per-image Shades of Gray (p = 6, --ita-correction image), which turns "
                "skin grey and ITA towards +-90 degrees: for comparison only")
    gains = "; ".join(f"{name} ({entry['images']:,} images) x{'/'.join(f'{g:.2f}' for g in entry['gains'])}"
                      for name, entry in lights.items()) or "none (no source has an image with usable skin pixels)"
    return (f"{SKIN_TONE_NOTE}after per-source colour correction (Shades of Gray p = 6, each source's median light "
            f"mapped to typical light skin; assumes the sources' patients share the median skin hue), R/G/B gains: {gains}")


def _skin_tone_notes(reasons: dict[str, str]) -> list[str]:
    """One note per reason a skin tone is missing, with its count and a few of its images."""
    by_reason: dict[str, list[str]] = {}
    for image_id, reason in reasons.items():
        by_reason.setdefault(reason, []).append(image_id)
    return [
        f"no skin tone for {len(ids):,} image(s) (e.g. {', '.join(ids[:3])}): {reason}; their ita is NaN and "
        "ita_category empty, so the skin-tone subgroups leave them out"
        for reason, ids in by_reason.items()
    ]


def finalize(
    name: str,
    root: Path,
    manifest: pd.DataFrame,
    notes: list[str],
    on_bad_image: str = "fail",
    progress: bool = True,
    ita_correction: str = DEFAULT_CORRECTION,
) -> Dataset:
    """Hash files, drop or refuse unreadable images, measure skin tone: the last step of every adapter."""
    if on_bad_image not in ("fail", "skip"):
        raise BenchboxError(f"--on-bad-image must be 'fail' or 'skip', not {on_bad_image!r}")
    if manifest.empty:
        raise BenchboxError(f"{root}: the dataset holds no images.")
    image_hashes = file_hashes(manifest["path"].tolist(), progress)
    mask_files = [p for p in manifest["mask_path"] if p]
    mask_lookup = dict(zip(mask_files, file_hashes(mask_files, progress)))
    mask_hashes = [mask_lookup.get(p, "") for p in manifest["mask_path"]]
    dataset = Dataset(name, root, manifest, "", image_hashes, mask_hashes, notes)
    try:
        dataset.hash = manifest_hash(manifest, pd.Series(image_hashes) + pd.Series(mask_hashes))
        ita, reasons, lights = _skin_tones(dataset, ita_correction, progress)
    except BadImageError as error:
        kept = _drop_unreadable(manifest, on_bad_image, notes)
        if len(kept) == len(manifest):  # the check passed what the cache refused: never loop
            raise error
        return finalize(name, root, kept, notes, on_bad_image, progress, ita_correction)
    notes.append(_correction_note(ita_correction, lights))
    notes.extend(_skin_tone_notes(reasons))
    dataset.manifest = manifest.assign(ita=ita, ita_category=[ita_category(v) for v in ita])
    return dataset
