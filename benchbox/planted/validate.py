"""`benchbox validate`: each planted-truth check on synthderm variants, as verdict rows.

A row says what was planted, what benchbox measured (with its interval) and whether that is what
the plant predicts: found where planted, nothing where not. A check that fails with an error
becomes an error row; the others still run.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import BenchboxError
from .validate_names import CHECKS

log = logging.getLogger("benchbox.validate")

# What each profile trains and generates. Smoke checks every code path in CI minutes on the easy
# data (its tiny models learn there); quick is the committed validation.md. `synth_for` overrides
# one check's data and `run_profile_for` its runs' profile (training recipe and evaluation):
# - contrast (2b) runs on easy data in both: there the model reads the lesion itself, so fading the
#   lesion on dark skin costs it most of what it knows; on the default data much of a small
#   model's AUC comes from cues pigment does not carry, and the planted gap stayed inside the noise
#   (quick msfa: -0.071 [-0.226, 0.075]);
# - shortcut (3) needs the quick recipe on the default data: on the easy data the model reads the
#   lesion and ignores the marker (drop 0.001 AUC), and the smoke recipe on the default data
#   learns too little to take anything (test AUC 0.59);
# - smoke runs checks 1, 2b and 3 in the quick run profile, which scores every test image: the
#   smoke run profile scores 150 (runner/config.py), too few for a subgroup or paired interval to
#   exclude 0 (smoke 2b: 53 dark test images, gap -0.188 [-0.445, 0.096]). Check 1's method is
#   deterministic, so only its evaluation changes. So smoke's 2b and 3 are quick's rows.
SHARED_WITH_QUICK = {"contrast": {"n_lesions": 1500, "difficulty": "easy"},
                     "shortcut": {"n_lesions": 1500, "difficulty": "default"}}
PROFILES = {
    "smoke": {"base_data": "synthderm-easy", "synth": {"n_lesions": 600, "size": 128, "seed": 0, "difficulty": "easy"},
              "synth_for": SHARED_WITH_QUICK, "run_profile_for": {"leakage": "quick", "contrast": "quick", "shortcut": "quick"},
              "power_replicates": 200, "explain_n": 16},
    "quick": {"base_data": "synthderm", "synth": {"n_lesions": 1500, "size": 128, "seed": 0, "difficulty": "default"},
              "synth_for": SHARED_WITH_QUICK, "power_replicates": 400, "explain_n": 48},
}

# Check 2b's twins share one split with a larger test part, so that the dark group (ITA <= 28,
# about a third of the images) has enough test lesions for its AUC gap to be told from 0.
CONTRAST_FRACTIONS = (0.5, 0.1, 0.4)


# Where nothing was planted, an effect smaller than this (on the metric's scale) does not fail the row.
NULL_MARGIN = 0.02

# Leakage is measured with the known-answer method: deterministic (no training noise between the two
# arms) and, matching an image to its lesion's other images, inflated by exactly what a leak offers.
LEAKAGE_METHOD = "colour_knn"

# The plant of check 2b: lesion pigment at this scale on every skin with ITA <= the subgroup boards'
# light/dark cut (metrics/suites.yaml: 28), full above. synthderm's default ramp, and even a ramp
# from 0.1, costs a classifier almost nothing on ITA <= 28 (synthderm.py, "Skin tone"; quick msfa:
# +0.031 [-0.102, 0.163]), so the plant is a step that leaves dark-skin lesions barely visible.
PLANTED_CONTRAST_FLOOR = 0.05


@dataclass
class Row:
    check: str
    planted: str
    measured: str
    value: float
    ci_low: float
    ci_high: float
    expected: str
    verdict: str  # pass | fail | error
    detail: str = ""


@dataclass
class Context:
    profile: str
    method: str
    out: Path
    progress: bool = True

    @property
    def settings(self) -> dict:
        return PROFILES[self.profile]

    def synth(self, check: str) -> dict:
        """synthderm's generator options for `check`'s variants: the profile's, with the check's overrides."""
        return {**self.settings["synth"], **self.settings.get("synth_for", {}).get(check, {})}

    def run_config(self, data: str, out: Path, split: str | None = None, check: str | None = None):
        """One training seed of the check's method on `data`, in the check's run profile."""
        from ..runner.config import RunConfig

        profile = self.settings.get("run_profile_for", {}).get(check, self.profile)
        return RunConfig(methods=[self.method], data=data, split=split, profile=profile, seeds=[0],
                         out=str(out), explain_n=self.settings["explain_n"])


def excludes_zero(low: float, high: float) -> bool:
    return bool(np.isfinite(low) and np.isfinite(high) and (low > 0 or high < 0))


def interval_row(check: str, planted: str, measured: str, entry: dict, expect_effect: bool, sign: int,
                 detail: str = "") -> Row:
    """A row judged by its interval. Where the effect was planted, the interval must lie on the
    planted side of 0 (`sign` +1 above, -1 below). Where it was not, the interval must not lie wholly
    beyond NULL_MARGIN on that side: no effect of the planted kind that matters (a clean model's
    0.003 AUC drop on unfamiliar markers is real, and no shortcut)."""
    value, low, high = (np.nan if entry.get(k) is None else float(entry[k]) for k in ("value", "ci_low", "ci_high"))  # JSON: NaN is null
    side = "above" if sign > 0 else "below"
    if expect_effect:
        found = excludes_zero(low, high) and np.sign(value) == sign
        expected = f"interval {side} 0"
    else:
        beyond = low > NULL_MARGIN if sign > 0 else high < -NULL_MARGIN
        found = np.isfinite(low) and np.isfinite(high) and not beyond
        expected = f"interval not wholly {side} {sign * NULL_MARGIN:+g}"
    if not np.isfinite(value):
        found, detail = False, f"{detail} (undefined: {entry.get('reason')})".strip()
    return Row(check, planted, measured, value, low, high, expected, "pass" if found else "fail", detail)


# --- 1. leakage -------------------------------------------------------------------------------------


def one_image_per_lesion(dataset, out: Path, progress: bool = True) -> str:
    """A csv: dataset of the first image of each true lesion of a synthderm dataset (its truth file
    knows the lesions HAM10000-style relabelling hid) and of each near-duplicate group, so that no
    split can leak."""
    from ..data.synthderm import TRUTH_FILE
    from ..splits.grouping import group_manifest

    root = Path(dataset.manifest["path"].iloc[0]).parents[1]
    truth = pd.read_csv(root / TRUTH_FILE, dtype=str).set_index("image_id")
    manifest = dataset.manifest.copy()
    manifest["true_lesion"] = truth.loc[manifest["image_id"], "true_lesion_id"].to_numpy()
    single = manifest.sort_values("image_id").drop_duplicates("true_lesion")
    while True:  # removing an image can reveal a near-duplicate pair it hid, so regroup until none is left
        groups, _ = group_manifest(single, progress)
        if pd.Series(groups).is_unique:
            break
        single = single[~pd.Series(groups).duplicated().to_numpy()]
    columns = ["image_id", "lesion_id", "path", "dx", "mask_path", "age", "sex", "localization", "source", "dx_type"]
    out.parent.mkdir(parents=True, exist_ok=True)
    single[columns].to_csv(out, index=False, lineterminator="\n")
    return f"csv:{out}"


def shared_split(dataset, out: Path, fractions=None, progress: bool = True) -> Path:
    """A lesion-grouped split of `dataset`, written once and used for every twin of a check (twins
    have the same images and lesions, only the planted effect differs), so they are scored on the
    same test images."""
    from ..splits import DEFAULT_FRACTIONS
    from ..splits.build import make_split
    from ..splits.manifest import write_split

    if not out.is_file():
        table, info = make_split(dataset.manifest, seed=0, fractions=fractions or DEFAULT_FRACTIONS, progress=progress)
        write_split(table, out, info, f"{dataset.name} (validate: shared by the check's twins)", dataset.hash)
    return out


def leaky_split(dataset, out: Path) -> Path:
    """An image-level split of the dataset (what the published methods used), written with its hash."""
    from ..splits.build import image_level_split
    from ..splits.manifest import write_split

    table, info = image_level_split(dataset.manifest, seed=0)
    write_split(table, out, info, dataset.name, dataset.hash)
    return out


def check_leakage(ctx: Context) -> list[Row]:
    from ..data.load import load_dataset
    from .leakage import measure_inflation

    base = load_dataset(ctx.settings["base_data"], progress=ctx.progress)
    variants = {"several images per lesion": (ctx.settings["base_data"], base, True)}
    single_spec = one_image_per_lesion(base, ctx.out / "leakage" / "one_image_per_lesion.csv", ctx.progress)
    variants["one image per lesion"] = (single_spec, load_dataset(single_spec, progress=ctx.progress), False)
    rows = []
    for label, (spec, dataset, leaks) in variants.items():
        folder = ctx.out / "leakage" / label.replace(" ", "_")
        split = leaky_split(dataset, folder / "image_level_split.csv")
        config = replace(ctx.run_config(spec, folder, split=str(split), check="leakage"), methods=[LEAKAGE_METHOD])
        result = measure_inflation(config, folder, ctx.progress)
        if result["failed"]:
            raise BenchboxError(f"leakage ({label}): the {' and '.join(result['failed'])} run(s) failed; see {folder}")
        leak = result["leak"]
        for row in result["rows"]:
            planted = (f"{label}: image-level split, {leak['lesions_crossing']} lesions in two parts"
                       if leaks else f"{label}: an image-level split cannot leak")
            rows.append(interval_row(
                "1 leakage inflation", planted, f"{row['metric']} leaky − grouped ({LEAKAGE_METHOD}, {row['board']} board)",
                {"value": row["diff"], "ci_low": row["ci_low"], "ci_high": row["ci_high"], "reason": row.get("reason")},
                expect_effect=leaks, sign=1,
                detail=f"leaky {row['value_a']:.3f} vs grouped {row['value_b']:.3f} on the same {row['n']} test images; "
                       f"the grouped twin moved {result['moved_images']} image(s) of crossing groups"))
    return rows


# --- 2. subgroup gaps -----------------------------------------------------------------------------


def binomial_interval(share: float, n: int) -> tuple[float, float]:
    """Wilson's 95% interval of a proportion."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(round(share * n), n, alpha=0.05, method="wilson")
    return float(low), float(high)


def check_subgroups(ctx: Context) -> list[Row]:
    from .subgroup_power import PLANTED_DROP, flag_rates

    n = ctx.settings["power_replicates"]
    planted = flag_rates(PLANTED_DROP, n, seed=16, progress=ctx.progress)
    null = flag_rates(0.0, n, seed=17, progress=ctx.progress)
    rows = []
    for result, is_planted in ((planted, True), (null, False)):
        what = (f"simulated predictions, dark-group AUC lower by {-result['auc_gap']:.3f}" if is_planted
                else f"simulated predictions, no gap (mean gap {result['auc_gap']:+.3f})")
        for key, name, bound in (("test", "heterogeneity p < 0.05", 0.05), ("ci", "worst-group gap CI excludes 0", 0.15)):
            share = result[key]
            low, high = binomial_interval(share, n)
            if is_planted:
                ok, expected = share >= 0.8, "flagged in ≥ 80% of replicates"
            else:
                # the test is level 0.05 (two binomial SEs of slack); the worst of three groups is chosen
                # after looking, so its interval alone errs more often
                slack = 2 * np.sqrt(bound * (1 - bound) / n) if key == "test" else 0.0
                ok, expected = share <= bound + slack, f"flagged in ≤ {bound + slack:.1%} of replicates"
            rows.append(Row("2a subgroup gap (statistics)", what, f"share of {n} replicates with {name}", share,
                            low, high, expected, "pass" if ok else "fail"))
    return rows


def check_contrast(ctx: Context) -> list[Row]:
    from ..data.load import ensure_synthderm_variant, load_dataset
    from ..metrics.config import load_config
    from ..runner.run import execute
    from .contrast import GAP_METRIC, light_dark_gap

    cut = load_config().ita_light_dark_cut
    roots = {contrast: ensure_synthderm_variant(f"validate-contrast-{contrast}", **ctx.synth("contrast"),
                                                lesion_contrast=contrast, **({"contrast_step_ita": cut} if planted else {}))
             for contrast, planted in ((PLANTED_CONTRAST_FLOOR, True), ("equal", False))}
    split = shared_split(load_dataset(f"synthderm:{roots['equal']}", progress=ctx.progress),
                         ctx.out / "contrast" / "split.csv", CONTRAST_FRACTIONS, ctx.progress)
    rows = []
    for contrast, root in roots.items():
        planted = contrast != "equal"
        folder = ctx.out / "contrast" / ("faded_on_dark_skin" if planted else "equal")
        if execute(ctx.run_config(f"synthderm:{root}", folder, split=str(split), check="contrast"), ctx.progress) != 0:
            raise BenchboxError(f"contrast ({contrast}): the run failed; see {folder}/run.log")
        what = (f"lesion pigment faded to {PLANTED_CONTRAST_FLOOR}x on skin with ITA ≤ {cut:g} (the dark group), "
                "1x above" if planted else "equal lesion contrast on every skin tone")
        rows.append(interval_row("2b subgroup gap (end to end)", what, f"{GAP_METRIC} ({ctx.method})",
                                 light_dark_gap(folder, ctx.method), expect_effect=planted, sign=-1))
    return rows


def check_shortcut(ctx: Context) -> list[Row]:
    from .shortcut import shortcut_rows

    return shortcut_rows(ctx)


def check_randomisation(ctx: Context) -> list[Row]:
    from .explanations import randomisation_rows

    return randomisation_rows(ctx)


RUNNERS = {"leakage": check_leakage, "subgroups": check_subgroups, "contrast": check_contrast,
           "shortcut": check_shortcut, "randomisation": check_randomisation}


def run_checks(ctx: Context, checks: tuple[str, ...] = CHECKS) -> list[Row]:
    """Every named check's rows; a check that raises becomes one error row (logged with its traceback)."""
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise BenchboxError(f"benchbox validate: unknown check(s) {unknown}; choose from {list(CHECKS)}.")
    if ctx.profile not in PROFILES:
        raise BenchboxError(f"benchbox validate: --profile must be one of {list(PROFILES)}, not {ctx.profile!r}.")
    rows = []
    for name in checks:
        try:
            rows += RUNNERS[name](ctx)
        except Exception as error:  # one failing check never takes the others down
            log.error("check %s failed:\n%s", name, traceback.format_exc())
            rows.append(Row(name, "—", "—", np.nan, np.nan, np.nan, "—", "error", f"{type(error).__name__}: {error}"))
    return rows


def rows_frame(rows: list[Row]) -> pd.DataFrame:
    return pd.DataFrame([asdict(row) for row in rows])
