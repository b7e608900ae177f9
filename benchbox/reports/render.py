"""Write a run's report folder: README.md (boards and every summary table), subgroups.md
(per-group details) and plots/*.png, plus a copy of run.json. Everything is generated from the
run folder alone, so a report can be re-rendered at any time."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tqdm import tqdm

from ..labels import CLASSES
from . import plots
from .boards import (
    ALPHA,
    BETTER_MARK,
    CALIBRATION_METRICS,
    GAP_MARK,
    SEGMENTATION_METRICS,
    board_definitions,
    board_methods,
    calibration_table,
    efficiency_names,
    efficiency_table,
    explanation_table,
    failures_table,
    full_board_table,
    header_table,
    leaderboard_table,
    methods_with,
    per_class_table,
    segmentation_table,
    sort_methods,
)
from .claims import REGISTRY_DIR, claims_section, load_cards
from .runfolder import Run, read_run
from .subgroup_tables import (
    parse_subgroups,
    subgroup_attributes,
    subgroup_detail_table,
    subgroup_spread_table,
)

REPORT_NAME = "README.md"
SUBGROUPS_NAME = "subgroups.md"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def _image(path: Path | None, out_dir: Path, alt: str) -> str:
    return f"![{alt}]({path.relative_to(out_dir).as_posix()})" if path else ""


def _seed_note(run: Run) -> str:
    seeds = ", ".join(map(str, run.seeds))
    if run.n_seeds() <= 1:
        return (f"All figures are from one training seed ({seeds}): **training noise is not included** "
                "in any interval, which covers lesion sampling only.")
    return (f"Values are **means over training seeds {seeds}**; each interval includes both the "
            "lesion sampling and the spread between seeds (lesion bootstrap of the seed mean widened "
            "by the seeds' spread, Student t with Welch-Satterthwaite degrees of freedom; "
            "`metrics/README.md`), and so do the paired tests. Per-seed values are in each method's "
            f"`metrics.json`. Curves, matrices and saliency grids show seed {run.seeds[0]}.")


def _ci_methods(run: Run) -> str:
    found = sorted({m.ci_method for method in run.methods for m in run.method_metrics(method).values()
                    if m.ci_method})
    return ", ".join(found) if found else "not recorded"


def _boards(run: Run, out_dir: Path) -> list[str]:
    sections = []
    for board in board_definitions():
        per_method = board_methods(run, board)
        if not per_method:
            continue
        order = sort_methods(per_method, board.primary)
        draw = plots.roc_binary if board.name == "binary" else plots.roc_multiclass
        roc = draw(run, order, out_dir / "plots" / f"roc_{board.name}.png")
        sections += [
            f"## {board.title}",
            f"Sorted by `{board.primary}`. Ranks are shared where the Holm-corrected paired test "
            f"(p < {ALPHA}, test named in comparisons.json) does not separate methods: a rank runs "
            "from 1 + the methods significantly better to n - the methods significantly worse. "
            f"\"vs next\" is the Holm-corrected p against the next row; {BETTER_MARK} marks a row "
            "significantly better than the next.",
            leaderboard_table(run, board),
            f"All metrics of this board (sorted as above):",
            full_board_table(run, board),
            _image(roc, out_dir, f"ROC curves, {board.name} board"),
        ]
        for family in board.per_class:
            if methods_with(run, [f"{family}.{c}" for c in CLASSES]):
                sections += [f"### Per-class {family}", per_class_table(run, family)]
    return sections


def _explanations(run: Run, out_dir: Path, done: list[str]) -> list[str]:
    explained = [m for m in done if any(n.startswith("xai.") for n in run.method_metrics(m))]
    if not explained:
        return []
    sections = ["## Explanations",
                "Localisation against the ground-truth lesion masks and deletion/insertion "
                "faithfulness; each method's explainers sit above its centred-Gaussian baseline "
                "row: an explainer that does not beat the baseline localises no better than a "
                "blob in the image centre.",
                explanation_table(run)]
    for method in explained:
        grid = plots.saliency_grid(run.done_jobs(method)[0], out_dir / "plots" / f"saliency_{_slug(method)}.png")
        if grid:
            sections += [f"### Saliency: {method}", _image(grid, out_dir, f"saliency {method}")]
    return sections


def _subgroup_details(run: Run, out_dir: Path, done: list[str]) -> str:
    """subgroups.md: every group of every attribute, with forest plots."""
    sections = [f"# Subgroups: {run.info.get('run_id', run.folder.name)}",
                f"{_seed_note(run)} `gap vs rest` = the group minus all other test images; "
                f"{GAP_MARK} = its 95% CI excludes 0. A NaN gives its reason. Back to the "
                f"[report]({REPORT_NAME})."]
    for attribute in subgroup_attributes(run):
        sections += [f"## By {attribute}", subgroup_detail_table(run, attribute)]
        metrics = list(dict.fromkeys(metric for m in done for attr, metric in parse_subgroups(run.method_metrics(m))
                                     if attr == attribute))
        for metric in metrics:
            path = plots.forest(run, attribute, metric,
                                out_dir / "plots" / f"forest_{_slug(attribute)}_{_slug(metric)}.png")
            sections.append(_image(path, out_dir, f"gaps by {attribute}, {metric}"))
    return "\n\n".join(s for s in sections if s) + "\n"


def render_markdown(run: Run, out_dir: Path, cards: dict, show_progress: bool = True) -> dict[str, str]:
    """{file name: markdown} of the report; draws the plots into out_dir/plots as it goes."""
    done = [m for m in run.methods if run.done_jobs(m)]
    progress = tqdm(total=5, desc="report", unit="part", leave=False, disable=not show_progress)
    sections = [
        f"# benchbox report: {run.info.get('run_id', run.folder.name)}",
        "Generated by `benchbox report RUN_DIR [--out DIR]` from the run folder alone (never "
        "from live models). To regenerate: `benchbox run` with the configuration in `run.json` "
        "(the default run is `benchbox run --all`), then `benchbox report <run folder> --out "
        "<this folder>`; `reports/README.md` explains every table.",
        header_table(run),
        f"{_seed_note(run)} Every value is `estimate [95% CI low, high]` on the test split "
        f"(CI: {_ci_methods(run)}); ↑ higher is better, ↓ lower is better.",
    ]
    if run.failed_jobs():
        sections += ["## Failed jobs", failures_table(run)]
    sections += _boards(run, out_dir)
    progress.update()

    if methods_with(run, CALIBRATION_METRICS):
        sections += ["## Calibration",
                     "`ece`, `brier`, `nll` over the method's own classes; `binary.*` on the "
                     "malignant-vs-benign view.",
                     calibration_table(run),
                     _image(plots.reliability(run, done, out_dir / "plots" / "reliability.png"), out_dir,
                            "reliability diagrams")]
    confusion = plots.confusion(run, done, out_dir / "plots" / "confusion.png")
    if confusion:
        sections += ["## Confusion matrices", _image(confusion, out_dir, "confusion matrices")]
    if efficiency_names(run):
        sections += ["## Efficiency", efficiency_table(run)]
    progress.update()
    sections += _explanations(run, out_dir, done)
    progress.update()

    documents = {}
    if subgroup_attributes(run):
        sections += ["## Subgroup gaps",
                     "The worst group's gap to the rest (group minus all other test images; the "
                     "group, in parentheses, is the one whose gap is worst by point estimate) with "
                     f"the 95% CI of that group's gap; {GAP_MARK} = the CI excludes 0. The group was "
                     "picked for being worst, so read the mark with `heterogeneity_p`: a lesion-level "
                     "permutation test of \"group and error are unrelated\" at the binary operating "
                     "point (`binary`) and the arg-max (`multiclass`), over all groups at once. "
                     "Every group, its gap to the rest and forest plots: "
                     f"[{SUBGROUPS_NAME}]({SUBGROUPS_NAME}).",
                     subgroup_spread_table(run)]
        documents[SUBGROUPS_NAME] = _subgroup_details(run, out_dir, done)
    progress.update()

    if methods_with(run, SEGMENTATION_METRICS):
        sections += ["## Segmentation (methods that predict lesion masks)", segmentation_table(run)]
    claims = claims_section(run, cards)
    if claims:
        sections += ["## Claimed vs measured",
                     "The papers' numbers come from each method's card in `registry/`; they were "
                     "obtained under the paper's protocol, stated beside this run's.", claims]
    progress.update()
    progress.close()
    documents[REPORT_NAME] = "\n\n".join(s for s in sections if s) + "\n"
    return documents


def render_report(run_dir: str | Path, out_dir: str | Path | None = None,
                  registry_dir: str | Path = REGISTRY_DIR, show_progress: bool = True) -> Path:
    """Render the report of `run_dir` into `out_dir` (default: <run_dir>/report); returns the
    path of its README.md. Earlier plots and documents in out_dir are replaced."""
    run = read_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*(out / "plots").glob("*.png"), out / SUBGROUPS_NAME]:
        stale.unlink(missing_ok=True)
    documents = render_markdown(run, out, load_cards(Path(registry_dir)), show_progress)
    if (out / "run.json").resolve() != (run.folder / "run.json").resolve():
        # a report folder elsewhere (the committed leaderboards) stands alone: the run and the
        # method-level metrics behind every number it shows
        shutil.copyfile(run.folder / "run.json", out / "run.json")
        for method in run.methods:
            if (run.folder / method / "metrics.json").exists():
                (out / "metrics").mkdir(exist_ok=True)
                shutil.copyfile(run.folder / method / "metrics.json", out / "metrics" / f"{method}.json")
    for name, text in documents.items():
        temporary = out / f".{name}.tmp"
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(out / name)
    return out / REPORT_NAME
