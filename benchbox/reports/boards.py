"""Markdown tables (tabulate, GitHub format) built from a `Run`: the leaderboards and the
per-class, calibration, efficiency, explanation, subgroup, segmentation and claims tables.
Every number is printed from the run's metrics as `value [ci_low, ci_high]`."""

from __future__ import annotations

import fnmatch
import math
from collections import Counter
from typing import Any

from tabulate import tabulate

from ..data.ita import SKIN_TONE_NOTE
from ..labels import CLASSES, MALIGNANT_CLASSES
from ..metrics.config import Board, load_config
from ..metrics.operating_point import degenerate_operating_point
from .runfolder import Metric, Run

ALPHA = 0.05  # family-wise level for the Holm-corrected "better than the next row" mark
BETTER_MARK = "†"  # significantly better than the next row (Holm-corrected p < ALPHA)
GAP_MARK = "*"  # a group-vs-rest gap whose 95% CI excludes 0
DEGENERATE_MARK = "⚠"  # a seed's binary operating point put (nearly) every test image on one side
BASELINE_EXPLAINER = "gaussian"
# Preferred column order; further xai.<explainer>.<metric> names found in a run follow.
EXPLANATION_METRICS = ("iou", "iou_at_mask_area", "pointing_game", "energy_pointing_game",
                       "deletion_auc", "insertion_auc", "mprt_spearman", "mprt_ssim")
RANDOMISATION_METRICS = ("mprt_spearman", "mprt_ssim")  # need a model: the Gaussian baseline reads n/a
CALIBRATION_METRICS = ("ece", "ece_classwise", "brier", "nll", "binary.ece", "binary.brier", "binary.nll")
# Patterns, in column order, for the runner's efficiency metrics (both spellings in use:
# gflops / flops*, peak_memory* / memory.*).
EFFICIENCY_PATTERNS = ("params_m", "gflops", "flops*", "latency.*", "throughput.*", "peak_memory*", "memory.*")
SEGMENTATION_METRICS = ("segmentation.dice", "segmentation.iou")


def board_definitions() -> list[Board]:
    """The boards of metrics/suites.yaml, the one holding the most tasks (every method) first."""
    return sorted(load_config().boards.values(), key=lambda board: -len(board.tasks))


def format_number(x: float) -> str:
    """Three significant digits, plain decimals (no exponent); integers from 100 up."""
    if not math.isfinite(x):
        return "NaN"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:.0f}"
    rounded = float(f"{x:.3g}")  # 0.9995 -> 1.0, so it prints as 1.00, not 1.000
    decimals = max(2 - math.floor(math.log10(abs(rounded))), 0)
    return f"{rounded:.{decimals}f}"


def format_metric(metric: Metric | None) -> str:
    """`0.713 [0.662, 0.751]`; NaN with its reason; the value alone when there is no CI, marked
    "(no CI)" when the metrics engine gave a reason (measurements such as latency have none)."""
    if metric is None:
        return "—"
    if not math.isfinite(metric.value):
        return f"NaN ({metric.reason})" if metric.reason else "NaN"
    text = format_number(metric.value)
    if metric.has_ci:
        text += f" [{format_number(metric.ci_low)}, {format_number(metric.ci_high)}]"
    elif metric.reason:
        text += " (no CI)"
    return text


def arrow(higher_is_better: bool | None) -> str:
    return {True: "↑", False: "↓"}.get(higher_is_better, "")


def markdown_table(rows: list[list[Any]], headers: list[str]) -> str:
    cells = [[str(cell).replace("|", "\\|") for cell in row] for row in rows]
    return tabulate(cells, headers=headers, tablefmt="github", disable_numparse=True)


def _direction(per_method: dict[str, dict[str, Metric]], name: str) -> bool | None:
    return next((m[name].higher_is_better for m in per_method.values() if name in m), None)


def _headers(per_method: dict[str, dict[str, Metric]], names: tuple[str, ...] | list[str]) -> list[str]:
    return [f"{name} {arrow(_direction(per_method, name))}".rstrip() for name in names]


def sort_methods(per_method: dict[str, dict[str, Metric]], primary: str) -> list[str]:
    """Best first by the primary metric in its own direction; missing or NaN values last."""
    higher = _direction(per_method, primary) is not False

    def key(method: str) -> tuple[int, float]:
        metric = per_method[method].get(primary)
        if metric is None or not math.isfinite(metric.value):
            return (1, 0.0)
        return (0, -metric.value if higher else metric.value)

    return sorted(per_method, key=key)


def find_comparisons(run: Run, board: str, metric: str, first: str, second: str) -> list[dict[str, Any]]:
    """comparisons.json entries for this pair in either order (several when listed per seed)."""
    return [c for c in run.comparisons
            if c.get("board") == board and c.get("metric") == metric
            and {c.get("a"), c.get("b")} == {first, second}]


def is_better(comparison: dict[str, Any], method: str, higher_is_better: bool) -> bool:
    """Holm-corrected p below ALPHA and the difference (a - b) favouring `method`."""
    p_holm, diff = comparison.get("p_holm"), comparison.get("diff")
    if p_holm is None or diff is None or not p_holm < ALPHA:
        return False
    advantage_of_a = diff if higher_is_better else -diff
    return advantage_of_a > 0 if comparison["a"] == method else advantage_of_a < 0


def board_methods(run: Run, board: Board) -> dict[str, dict[str, Metric]]:
    return {m: run.method_metrics(m) for m in run.methods if run.task(m) in board.tasks}


HEADLINE_METRICS = 6  # the primary metric and five more; the rest go to the full table below


def shared_ranks(run: Run, board: Board, order: list[str], higher: bool) -> dict[str, str]:
    """Rank of each method as far as the Holm-corrected paired tests tell: from 1 + the number of
    methods significantly better to n - the number significantly worse ("2–4" when tests do not
    separate it from its neighbours; "1" only when it beats every other method)."""
    better = {m: 0 for m in order}
    worse = {m: 0 for m in order}
    for i, first in enumerate(order):
        for second in order[i + 1:]:
            found = find_comparisons(run, board.name, board.primary, first, second)
            if found and all(is_better(c, first, higher) for c in found):
                better[second] += 1
                worse[first] += 1
            elif found and all(is_better(c, second, higher) for c in found):
                better[first] += 1
                worse[second] += 1
    ranks = {}
    for method in order:
        low, high = 1 + better[method], len(order) - worse[method]
        ranks[method] = str(low) if low == high else f"{low}–{high}"
    return ranks


def operating_point_flags(run: Run, methods: list[str]) -> dict[str, list[str]]:
    """method -> "seed S: <why>" for each seed whose validation threshold collapsed on test."""
    flags: dict[str, list[str]] = {}
    for method in methods:
        for job in run.done_jobs(method):
            if job.threshold is None:
                continue
            frame = job.predictions()
            val, test = frame[frame["split"] == "val"], frame[frame["split"] == "test"]
            why = degenerate_operating_point(val["p_malignant"], test["p_malignant"],
                                             test["y_true"].isin(MALIGNANT_CLASSES), job.threshold)
            if why:
                flags.setdefault(method, []).append(f"seed {job.seed}: {why}")
    return flags


def leaderboard_table(run: Run, board: Board) -> str:
    """The headline board: shared ranks, the primary metric and five more, and the Holm-corrected
    p against the next row (BETTER_MARK where the difference is significant in this row's favour).
    On a board with an operating point (binary.sensitivity), a method whose threshold collapsed on
    test is marked DEGENERATE_MARK and explained below the table."""
    per_method = board_methods(run, board)
    order = sort_methods(per_method, board.primary)
    higher = _direction(per_method, board.primary) is not False
    columns = present(per_method, board.metrics)[:HEADLINE_METRICS]
    ranks = shared_ranks(run, board, order, higher)
    flags = operating_point_flags(run, order) if "binary.sensitivity" in board.metrics else {}
    rows = []
    for position, method in enumerate(order, start=1):
        versus = ""
        if position < len(order):
            found = find_comparisons(run, board.name, board.primary, method, order[position])
            p_values = [c.get("p_holm") for c in found]
            p_values = [p for p in p_values if p is not None and math.isfinite(p)]
            if p_values:
                significant = all(is_better(c, method, higher) for c in found)
                versus = format_p(max(p_values)) + (f" {BETTER_MARK}" if significant else "")
        name = f"{method} {DEGENERATE_MARK}" if method in flags else method
        rows.append([ranks[method], name, *[format_metric(per_method[method].get(n)) for n in columns], versus])
    table = markdown_table(rows, ["rank", "method", *_headers(per_method, columns), "vs next (Holm p)"])
    notes = [f"{DEGENERATE_MARK} {method}, {line}" for method, lines in flags.items() for line in lines]
    return "\n\n".join([table, *notes])


def full_board_table(run: Run, board: Board) -> str:
    """Every metric of the board that the headline leaves out, rows in the headline's order."""
    per_method = board_methods(run, board)
    order = sort_methods(per_method, board.primary)
    names = present(per_method, board.metrics)
    return method_table(run, order, [board.primary, *names[HEADLINE_METRICS:]])


def present(per_method: dict[str, dict[str, Metric]], names: tuple[str, ...] | list[str]) -> list[str]:
    """The names that at least one method reports (a column nobody fills is left out)."""
    return [n for n in names if any(n in metrics for metrics in per_method.values())]


def format_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def method_table(run: Run, methods: list[str], names: tuple[str, ...] | list[str],
                 extra: dict[str, dict[str, str]] | None = None) -> str:
    """Rows = methods, columns = the metric names someone reports (with ↑/↓), then text columns."""
    per_method = {m: run.method_metrics(m) for m in methods}
    names = present(per_method, names)
    extra = extra or {}
    extra_headers = list(next(iter(extra.values()), {}).keys())
    rows = [[m, *[format_metric(per_method[m].get(n)) for n in names],
             *[extra.get(m, {}).get(h, "") for h in extra_headers]] for m in methods]
    return markdown_table(rows, ["method", *_headers(per_method, names), *extra_headers])


def methods_with(run: Run, names: tuple[str, ...] | list[str]) -> list[str]:
    """Methods (with finished jobs) that report at least one of `names`."""
    return [m for m in run.methods if any(n in run.method_metrics(m) for n in names)]


def per_class_table(run: Run, family: str) -> str:
    """`<family>.<class>` for each of the 7 classes, e.g. f1.mel."""
    names = [f"{family}.{c}" for c in CLASSES]
    return method_table(run, methods_with(run, names), names)


def calibration_table(run: Run) -> str:
    return method_table(run, methods_with(run, CALIBRATION_METRICS), CALIBRATION_METRICS)


def efficiency_names(run: Run) -> list[str]:
    """Efficiency metric names of the run, in EFFICIENCY_PATTERNS order."""
    found = list(dict.fromkeys(n for m in run.methods for n in run.method_metrics(m)))
    ordered: list[str] = []
    for pattern in EFFICIENCY_PATTERNS:
        ordered += [n for n in found if fnmatch.fnmatchcase(n, pattern) and n not in ordered]
    return ordered


def efficiency_table(run: Run) -> str:
    """Efficiency metrics plus the device, thread count and input size they were measured with
    (the `details` of efficiency.json)."""
    names = efficiency_names(run)
    methods = methods_with(run, names)
    extra = {}
    for m in methods:
        efficiency = run.done_jobs(m)[0].efficiency.get("details", {})
        threads = efficiency.get("torch_threads")
        extra[m] = {"device": str(efficiency.get("device", "—")),
                    "threads": "—" if threads is None else f"{threads:g}",
                    "input": str(efficiency.get("input_size", "—"))}
    return method_table(run, methods, names, extra)


def explainers(metrics: dict[str, Metric]) -> list[str]:
    """Explainer names found in `xai.<explainer>.<metric>`, the Gaussian baseline last."""
    found = list(dict.fromkeys(name.split(".")[1] for name in metrics if name.startswith("xai.")))
    return [e for e in found if e != BASELINE_EXPLAINER] + (
        [BASELINE_EXPLAINER] if BASELINE_EXPLAINER in found else [])


def explanation_table(run: Run) -> str:
    """One row per (method, explainer) with the method's centred-Gaussian baseline row below.

    An explainer whose maps survive full weight randomisation (mean `mprt_spearman` above
    `MPRT_THRESHOLD`) is marked as failing the sanity check; the baseline's randomisation cells read n/a.
    """
    from ..explain.randomisation import MPRT_THRESHOLD  # numpy-only: torch is not loaded for a report

    per_method = {m: run.method_metrics(m) for m in run.methods}
    found = list(dict.fromkeys(name.split(".", 2)[2] for metrics in per_method.values()
                               for name in metrics if name.startswith("xai.") and name.count(".") >= 2))
    columns = [s for s in EXPLANATION_METRICS if s in found] + [s for s in found if s not in EXPLANATION_METRICS]
    rows, directions = [], {}
    for method, metrics in per_method.items():
        for explainer in explainers(metrics):
            label = f"{explainer} (baseline)" if explainer == BASELINE_EXPLAINER else explainer
            cells = []
            for short in columns:
                metric = metrics.get(f"xai.{explainer}.{short}")
                if metric is not None:
                    directions.setdefault(short, metric.higher_is_better)
                if metric is None and explainer == BASELINE_EXPLAINER and short in RANDOMISATION_METRICS:
                    cells.append("n/a (no model)")
                    continue
                cell = format_metric(metric)
                if short == "mprt_spearman" and metric is not None and metric.value > MPRT_THRESHOLD:
                    cell += f" fails sanity check (> {MPRT_THRESHOLD})"
                cells.append(cell)
            rows.append([method, label, *cells])
    headers = [f"{s} {arrow(directions.get(s))}".rstrip() for s in columns]
    return markdown_table(rows, ["method", "explainer", *headers])


def segmentation_table(run: Run) -> str:
    return method_table(run, methods_with(run, SEGMENTATION_METRICS), SEGMENTATION_METRICS)


def header_table(run: Run) -> str:
    """Dataset, split, profile, seeds, interval method, code version and hardware of the run."""
    info = run.info
    config, dataset, split = info.get("config", {}), info.get("dataset", {}), info.get("split", {})
    if run.n_seeds() > 1:
        interval = "seed-aware: lesion bootstrap of the seed mean + between-seed spread (t, Welch-Satterthwaite)"
    else:
        interval = "lesion-clustered bootstrap of one training seed: training noise not included"
    rows = [
        ["run", info.get("run_id", run.folder.name)],
        ["created", info.get("created", "—")],
        ["dataset", f"{dataset.get('name', '—')} ({dataset.get('n_images', '?')} images, "
                    f"sha256 {str(dataset.get('hash', '—'))[:12]})"
                    + "".join(f"; {n}" for n in dataset.get("notes", []) if str(n).startswith("official scoring"))],
        ["split", f"{split.get('path') or '—'} (sha256 {str(split.get('hash', '—'))[:12]})"
                  + (f"; **{split['leak']['note']}**" if split.get("leak") else "")
                  + _dropped_note(split.get("dropped_images", []))],
        ["skin tone", next((str(n).removeprefix(SKIN_TONE_NOTE) for n in dataset.get("notes", [])
                            if str(n).startswith(SKIN_TONE_NOTE)), "ITA as recorded before colour correction")],
        ["profile", config.get("profile", "—")],
        ["seeds", ", ".join(str(s) for s in run.seeds)],
        ["intervals", interval],
        ["code version", describe_code_version(info.get("code_version"))],
        ["benchbox", info.get("benchbox_version", "—")],
        ["hardware", describe_mapping(info.get("hardware"))],
    ]
    return markdown_table(rows, ["", ""])


def _dropped_note(dropped: list[dict]) -> str:
    """The images --drop-leaking left out of val/test (the split's json says why, image by image)."""
    if not dropped:
        return ""
    parts = ", ".join(f"{part} {n}" for part, n in sorted(Counter(d["part"] for d in dropped).items()))
    ids = ", ".join(d["image_id"] for d in dropped[:5]) + (", …" if len(dropped) > 5 else "")
    return (f"; {len(dropped)} image(s) dropped as duplicates of images of an earlier part (--drop-leaking; "
            f"{parts}: {ids})")


def describe_code_version(code_version: Any) -> str:
    """`git describe` (with -dirty) and the short source hash that the runner records."""
    if isinstance(code_version, dict):
        text = str(code_version.get("git") or "not a git checkout")
        if code_version.get("source_sha256"):
            text += f", sources sha256 {code_version['source_sha256'][:12]}"
        return text
    return str(code_version or "—")


def describe_mapping(mapping: Any) -> str:
    if isinstance(mapping, dict):
        return ", ".join(f"{k}: {v}" for k, v in mapping.items()) or "—"
    return str(mapping or "—")


def failures_table(run: Run) -> str:
    rows = [[job.method, job.seed, ((job.error or "").strip().splitlines() or [""])[-1]]
            for job in run.failed_jobs()]
    return markdown_table(rows, ["method", "seed", "error (last line; see error.txt)"])
