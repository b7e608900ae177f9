"""Shared fixtures: an isolated cache per test session, the real-data samples, tiny datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def pytest_configure(config):
    """Under pytest-xdist (`-n auto`, pyproject.toml) each worker gets its own CPU, so a training test
    uses one torch thread (the runner sets threads to the CPUs it may use) instead of fighting the
    other worker for both."""
    import os

    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if count <= len(cpus):
            os.sched_setaffinity(0, {cpus[int(worker.removeprefix("gw")) % len(cpus)]})


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory):
    """Never touch the user's ~/.cache/benchbox from tests."""
    import os

    path = tmp_path_factory.mktemp("benchbox-cache")
    previous = os.environ.get("BENCHBOX_CACHE")
    os.environ["BENCHBOX_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("BENCHBOX_CACHE", None)
    else:
        os.environ["BENCHBOX_CACHE"] = previous


@pytest.fixture
def ham_sample() -> Path:
    path = SHARED_DATA / "ham10000_sample"
    if not path.exists():
        pytest.skip("../shared/data/ham10000_sample is not present")
    return path


@pytest.fixture
def isic_sample() -> Path:
    path = SHARED_DATA / "isic2018_sample"
    if not path.exists():
        pytest.skip("../shared/data/isic2018_sample is not present")
    return path


def write_ham_layout(root: Path, dx: list[str], lesion_ids: list[str] | None = None, size=(40, 30), masks=True) -> Path:
    """A tiny HAM10000-layout folder with coloured JPEGs and disc masks; returns root."""
    rng = np.random.default_rng(0)
    images = root / "HAM10000_images_part_1"
    mask_dir = root / "HAM10000_segmentations_lesion_tschandl"
    images.mkdir(parents=True)
    mask_dir.mkdir()
    rows = []
    for i, label in enumerate(dx):
        image_id = f"IMG_{i:07d}"
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{image_id}.jpg", quality=90)
        if masks:
            yy, xx = np.mgrid[: size[1], : size[0]]
            disc = ((yy - size[1] / 2) ** 2 + (xx - size[0] / 2) ** 2) < (min(size) / 3) ** 2
            Image.fromarray((disc * 255).astype(np.uint8)).save(mask_dir / f"{image_id}_segmentation.png")
        rows.append(
            {
                "lesion_id": lesion_ids[i] if lesion_ids else f"LES_{i:07d}",
                "image_id": image_id,
                "dx": label,
                "dx_type": "histo",
                "age": "50.0",
                "sex": "female",
                "localization": "back",
                "dataset": "site_a",
            }
        )
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    return root


@pytest.fixture
def make_ham_layout(tmp_path):
    """Factory: make_ham_layout(dx_list, lesion_ids=None, masks=True) -> root of a tiny HAM layout."""

    def make(dx, lesion_ids=None, masks=True, name="ham"):
        return write_ham_layout(tmp_path / name, dx, lesion_ids, masks=masks)

    return make
