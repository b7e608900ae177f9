"""Fixtures for the split tests: manifests built directly, not through the dataset adapters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from splits_helpers import HAM_METADATA, manifest_from, metadata_manifest_of_lesions


@pytest.fixture
def ham_metadata() -> pd.DataFrame:
    """The full official HAM10000 metadata as a metadata-only manifest; skips when absent."""
    if not HAM_METADATA.exists():
        pytest.skip("../shared/data/ham10000_sample/HAM10000_metadata.csv is not present")
    table = pd.read_csv(HAM_METADATA, dtype=str, keep_default_na=False)
    return manifest_from(table.rename(columns={"dataset": "source"}).to_dict("records"), str(HAM_METADATA))


@pytest.fixture
def random_manifest() -> pd.DataFrame:
    """600 lesions with 1-4 metadata-only images each, HAM10000-like class priors (seeded)."""
    rng = np.random.default_rng(7)
    classes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    priors = np.array([327, 514, 1099, 115, 1113, 6705, 142]) / 10015
    labels = list(rng.choice(classes, size=600, p=priors))
    counts = list(rng.choice([1, 1, 1, 2, 2, 3, 4], size=600))
    return metadata_manifest_of_lesions(counts, labels)
