"""Confounding tables: how each subgroup attribute goes with image source and with the class.

A skin-tone (or sex, age...) gap may really be an image-source (device) gap or a case-mix gap:
if the dark-skinned images come mostly from one source, or hold more melanomas, a model that is
worse on that source or on melanomas looks worse on dark skin. The report shows, per attribute,
its contingency table with the source and with the class, Cramér's V and a chi-squared p-value,
and the share of malignant images per group, so a reader can judge the raw gaps.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.stats import chi2_contingency
from scipy.stats.contingency import association as scipy_association

from ..errors import BenchboxError
from .subgroups import group_keys


def association(values: np.ndarray, other: np.ndarray, *, name: str = "", other_name: str = "") -> dict:
    """Contingency table of two per-image categorical arrays, with Cramér's V and the chi-squared p.

    Images where either value is missing (`group_key` None) are left out and counted in
    "n_missing"; labels are the `group_key`s of the remaining images, so no row or column is
    empty. V = sqrt(chi2 / (n (min(r, c) - 1))) without bias correction, chi2 the Pearson
    statistic without Yates' correction. With fewer than two rows or columns V and p are NaN
    and "reason" says why. `name` and `other_name` (say "ita_light_dark", "source") name the
    two variables in that reason. Returns plain JSON-able data:
    {"rows", "columns", "counts", "n", "n_missing", "cramers_v", "chi2_p", "reason"}.
    """
    name, other_name = name or "row value", other_name or "column value"
    row_keys = group_keys(values)
    column_keys = group_keys(other)
    if len(row_keys) != len(column_keys):
        raise BenchboxError(
            f"association of {name} and {other_name}: {len(row_keys)} and {len(column_keys)} values; "
            "give one value per image in both."
        )
    known = np.array([r is not None and c is not None for r, c in zip(row_keys, column_keys)], dtype=bool)
    rows, row_index = np.unique(row_keys[known].astype(str), return_inverse=True)
    columns, column_index = np.unique(column_keys[known].astype(str), return_inverse=True)
    counts = np.zeros((len(rows), len(columns)), dtype=np.int64)
    np.add.at(counts, (row_index, column_index), 1)
    out = {
        "rows": rows.tolist(),
        "columns": columns.tolist(),
        "counts": counts.tolist(),
        "n": int(known.sum()),
        "n_missing": int((~known).sum()),
        "cramers_v": float("nan"),
        "chi2_p": float("nan"),
        "reason": None,
    }
    if not known.any():
        out["reason"] = f"no image has both a known {name} and a known {other_name}"
    elif len(columns) < 2:
        out["reason"] = f"only one {other_name} ({out['columns'][0]!r}) among the images with a known {name}"
    elif len(rows) < 2:
        out["reason"] = f"only one {name} ({out['rows'][0]!r}) among the images with a known {other_name}"
    else:
        out["cramers_v"] = float(scipy_association(counts, method="cramer"))
        out["chi2_p"] = float(chi2_contingency(counts, correction=False).pvalue)
    return out


def confounding_tables(
    attributes: Mapping[str, np.ndarray], source: np.ndarray, dx: np.ndarray, malignant: np.ndarray
) -> dict[str, dict]:
    """Per attribute: {"source": its association with the image source (None for the attribute
    "source" itself), "class": its association with the diagnosis `dx` (class names per image),
    "malignant_share": {group: share of malignant images among the group's images}}.

    `malignant` is 0/1 per image; a group is a `group_key` of the attribute's known values.
    """
    malignant = np.asarray(malignant, dtype=np.float64)
    for what, array in (("source", source), ("dx", dx)):
        if len(array) != len(malignant):
            raise BenchboxError(
                f"confounding tables: {len(array)} {what} values but {len(malignant)} malignant labels."
            )
    out = {}
    for attribute, values in attributes.items():
        keys = group_keys(values)
        if len(keys) != len(malignant):
            raise BenchboxError(
                f"confounding tables: attribute {attribute!r} has {len(keys)} values but there are "
                f"{len(malignant)} images."
            )
        groups = sorted({k for k in keys if k is not None})
        out[attribute] = {
            "source": None if attribute == "source" else association(
                values, source, name=attribute, other_name="source"
            ),
            "class": association(values, dx, name=attribute, other_name="class"),
            "malignant_share": {group: float(malignant[keys == group].mean()) for group in groups},
        }
    return out
