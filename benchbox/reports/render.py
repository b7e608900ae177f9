"""Write a run's report folder: README.md (boards and every summary table), subgroups.md
(per-group details) and plots/*.png, plus a copy of run.json. Everything is generated from the
run folder alone, so a report can be re-rendered at any time. A report is drawn into a temporary
folder beside its own and swapped in when complete, so an interrupted render never leaves a
README that links to plots that are gone."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from tqdm import tqdm

from ..errors import BenchboxError, EnvironmentProblem
from ..labels import CLASSES
from ..paths import default_mode
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
from ..runner.store import CARDS_FOLDER
from .claims import REGISTRY_DIR, claims_section, run_cards
from .runfolder import Run, read_run
from .subgroup_tables import (
    confounding_counts,
    confounding_table,
    parse_subgroups,
    subgroup_attributes,
    subgroup_detail_table,
    subgroup_spread_table,
)

REPORT_NAME = "README.md"
SUBGROUPS_NAME = "subgroups.md"
# What a report folder holds; a folder holding anything else (a run folder, leaderboards/ with its
# gate baselines) gets the new report's files moved in, README.md last, instead of being replaced.
REPORT_ENTRIES = (REPORT_NAME, SUBGROUPS_NAME, "plots", "metrics", "run.json")


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


def stamp_leak(run: Run, sections: list[str]) -> list[str]:
    """Every section of a run on a leaky split (--allow-leaky-split) opens with the warning."""
    leak = run.info.get("split", {}).get("leak")
    if not (leak and leak.get("lesions_crossing")):
        return sections
    warning = f"> **{leak['note']}.**"
    return [part for s in sections for part in ([s, warning] if s.startswith("## ") else [s])]


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
            "All metrics of this board (sorted as above):",
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
        sections += [f"## By {attribute}", subgroup_detail_table(run, attribute), confounding_counts(run, attribute)]
        metrics = list(dict.fromkeys(metric for m in done for attr, metric in parse_subgroups(run.method_metrics(m))
                                     if attr == attribute))
        for metric in metrics:
            path = plots.forest(run, attribute, metric,
                                out_dir / "plots" / f"forest_{_slug(attribute)}_{_slug(metric)}.png")
            sections.append(_image(path, out_dir, f"gaps by {attribute}, {metric}"))
    return "\n\n".join(s for s in stamp_leak(run, sections) if s) + "\n"


def render_markdown(run: Run, out_dir: Path, cards: tuple[dict, str], show_progress: bool = True) -> dict[str, str]:
    """{file name: markdown} of the report; draws the plots into out_dir/plots as it goes."""
    with tqdm(total=5, desc="report", unit="part", leave=False, disable=not show_progress) as progress:
        return _documents(run, out_dir, cards, progress)  # the bar is cleared when a part fails, too


def _documents(run: Run, out_dir: Path, cards: tuple[dict, str], progress: tqdm) -> dict[str, str]:
    done = [m for m in run.methods if run.done_jobs(m)]
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
                     f"[{SUBGROUPS_NAME}]({SUBGROUPS_NAME}). A `source-adjusted` row gives the same "
                     "group's gap compared within each image source and pooled (weights n_group n_rest / "
                     "n; MCC standardised to the test set's class mix): a gap that is there raw but not "
                     "adjusted may come from the sources, not from the attribute.",
                     subgroup_spread_table(run)]
        confounding = confounding_table(run)
        if confounding:
            sections += ["### What the attributes go with",
                         "How strongly each attribute is associated with the image source (device, clinic) "
                         "and with the class on this run's test images (Cramér's V: 0 = independent, 1 = one "
                         "determines the other). Where V with source is large, a raw gap may be a source gap; "
                         "where V with class is large, a case-mix gap. The counts per source are in "
                         f"[{SUBGROUPS_NAME}]({SUBGROUPS_NAME}).", confounding]
        documents[SUBGROUPS_NAME] = _subgroup_details(run, out_dir, done)
    progress.update()

    if methods_with(run, SEGMENTATION_METRICS):
        sections += ["## Segmentation (methods that predict lesion masks)", segmentation_table(run)]
    claims = claims_section(run, *cards)
    if claims:
        sections += ["## Claimed vs measured",
                     "The papers' numbers come from each method's card (its paper's text, cited); they were "
                     "obtained under the paper's protocol, stated beside this run's. How each plugin follows "
                     "its paper, point by point: `registry/fidelity/<method>.md`.", claims]
    progress.update()
    documents[REPORT_NAME] = "\n\n".join(s for s in stamp_leak(run, sections) if s) + "\n"
    return documents


def render_report(run_dir: str | Path, out_dir: str | Path | None = None,
                  registry_dir: str | Path = REGISTRY_DIR, show_progress: bool = True) -> Path:
    """Render the report of `run_dir` into `out_dir` (default: <run_dir>/report); returns the
    path of its README.md. Earlier plots and documents in out_dir are replaced, only once the
    new report is complete: until then the previous one stays as it was."""
    run = read_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.folder / "report"
    if out.exists() and not out.is_dir():
        raise BenchboxError(f"{out} is a file; the report goes into a folder: pass another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.rendering-"))
    except OSError as error:
        raise EnvironmentProblem(f"cannot write the report beside {out} ({error.strerror or error}: "
                                 f"{error.filename}); pass a writable --out") from None
    try:
        # mkdtemp makes the folder 0700: give it the mode the report folder has, or would get from mkdir
        os.chmod(staging, stat.S_IMODE(out.stat().st_mode) if out.is_dir() else default_mode(directory=True))
        documents = render_markdown(run, staging, run_cards(run.folder, Path(registry_dir)), show_progress)
        if out.resolve() != run.folder.resolve():
            # a report folder elsewhere (the committed leaderboards) stands alone: the run and the
            # method-level metrics behind every number it shows
            shutil.copyfile(run.folder / "run.json", staging / "run.json")
            if (run.folder / CARDS_FOLDER).is_dir():
                shutil.copytree(run.folder / CARDS_FOLDER, staging / CARDS_FOLDER)
            for method in run.methods:
                if (run.folder / method / "metrics.json").exists():
                    (staging / "metrics").mkdir(exist_ok=True)
                    shutil.copyfile(run.folder / method / "metrics.json", staging / "metrics" / f"{method}.json")
        for name, text in documents.items():
            (staging / name).write_text(text, encoding="utf-8")
        if out.is_dir() and any(entry.name not in REPORT_ENTRIES for entry in out.iterdir()):
            _move_in(staging, out)
        else:
            _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / REPORT_NAME


def _swap_in(staging: Path, out: Path) -> None:
    """Replace the report folder `out` by the complete `staging` folder: two renames, undone if the
    second does not happen."""
    if not out.exists():
        os.rename(staging, out)
        return
    retired = staging.with_name(staging.name + ".previous")
    os.rename(out, retired)
    try:
        os.rename(staging, out)
    except BaseException:
        if not out.exists():
            os.rename(retired, out)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _move_in(staging: Path, out: Path) -> None:
    """Move the new report's files into a folder that holds other things too, README.md last, then
    remove the earlier report's plots that the new one does not draw: at every moment each link of
    the README in place leads to a file."""
    new = sorted((path.relative_to(staging) for path in staging.rglob("*") if path.is_file()),
                 key=lambda rel: (rel == Path(REPORT_NAME), str(rel)))
    for rel in new:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, out / rel)
    kept = set(new)
    for stale in [*(out / "plots").glob("*.png"), out / SUBGROUPS_NAME]:
        if stale.relative_to(out) not in kept:
            stale.unlink(missing_ok=True)
