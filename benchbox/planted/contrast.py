"""End to end: a skin-tone gap planted in the images is measured by the subgroup boards, and an
equal-contrast control shows none.

synthderm is generated twice with the same plans: lesion pigment fading on darker skin (graded
contrast) and at full strength on every skin (equal). One method is trained on each; the light/dark
gap of its binary AUC (dark minus the rest, `subgroup.ita_light_dark.binary.auc.gap.dark`, with its
lesion-clustered interval) is read from each run's pooled metrics.
"""

from __future__ import annotations

from pathlib import Path

from ..runner.store import read_json

GAP_METRIC = "subgroup.ita_light_dark.binary.auc.gap.dark"


def light_dark_gap(run_dir: Path, method: str) -> dict:
    """The method's dark-minus-rest AUC gap entry (value, ci_low, ci_high, reason) from a finished run."""
    metrics = read_json(Path(run_dir) / method / "metrics.json")["metrics"]
    return metrics[GAP_METRIC]
