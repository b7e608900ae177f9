"""Subgroup tables of a report, built from a `Run`: the spread table (each attribute and metric:
the worst group's gap to the rest with its CI and the group's name, and the attribute's
heterogeneity p-values) and the per-attribute detail table (every group: size, value, gap to the
rest). Names read here are documented in metrics/README.md ("Subgroups"):

    subgroup.<attribute>.<metric>.<group>           the metric on the group
    subgroup.<attribute>.<metric>.gap.<group>       group minus the rest
    subgroup.<attribute>.<metric>.adjusted_gap.<group>  that gap within image sources, pooled
    subgroup.<attribute>.<metric>.worst_gap         the worst group's gap (entry key "group")
    subgroup.<attribute>.<task>.heterogeneity_p     permutation p of "group and error unrelated"

The max - min gap (`subgroup.<attribute>.<metric>.gap`) of older run folders is ignored: its
bootstrap intervals were unreliable. Without a worst_gap entry the worst group is found from the
gap.<group> entries, by the same rule as the metrics engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import BenchboxError
from ..metrics.config import load_config
from .boards import GAP_MARK, format_metric, format_number, format_p, markdown_table
from .runfolder import Metric, Run

HETEROGENEITY = "heterogeneity_p"
HETEROGENEITY_TASKS = ("binary", "multiclass")


@dataclass
class SubgroupResult:
    """One (attribute, metric) of one method: per-group values, gaps to the rest, the worst gap."""

    worst_gap: Metric | None = None  # the worst group's gap to the rest
    worst_group_name: str | None = None  # the "group" of the worst_gap entry, when the run recorded it
    values: dict[str, Metric] = field(default_factory=dict)
    gaps: dict[str, Metric] = field(default_factory=dict)  # group minus the rest
    adjusted: dict[str, Metric] = field(default_factory=dict)  # that gap within sources, pooled

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys([*self.values, *self.gaps]))

    def direction(self, metric: str) -> bool | None:
        """higher_is_better of the metric itself (from its group values, else the suites file)."""
        found = next((m.higher_is_better for m in self.values.values() if m.higher_is_better is not None), None)
        if found is not None:
            return found
        try:
            return load_config().higher_is_better(metric)
        except BenchboxError:
            return None

    def worst(self, metric: str) -> tuple[str | None, Metric | None]:
        """(group, gap) of the worst group: the recorded worst_gap and its group, else the lowest
        (higher-is-better metric) or highest defined gap.<group> by point estimate."""
        if self.worst_gap is not None:
            group = self.worst_group_name
            if group is None:  # not recorded: the group whose gap is the worst gap
                group = next((g for g, gap in self.gaps.items() if gap.value == self.worst_gap.value), None)
            return group, self.worst_gap
        direction = self.direction(metric)
        defined = {g: gap for g, gap in self.gaps.items() if math.isfinite(gap.value)}
        if direction is None or not defined:
            return None, None
        pick = min if direction else max
        group = pick(defined, key=lambda g: defined[g].value)
        return group, defined[group]


def _is_heterogeneity(rest: str) -> bool:
    task, _, last = rest.partition(".")
    return last == HETEROGENEITY and task in HETEROGENEITY_TASKS


def parse_subgroups(metrics: dict[str, Metric]) -> dict[tuple[str, str], SubgroupResult]:
    """Split `subgroup.<attribute>.<metric>.(worst_gap | gap.<group> | <group>)` names. The metric
    itself may be dotted (binary.auc), so a per-group value is split at the longest metric name
    that the gaps or the top-level metrics use. Heterogeneity p-values (`parse_heterogeneity`)
    and old max - min gaps are left out."""
    results: dict[tuple[str, str], SubgroupResult] = {}
    plain: list[tuple[str, str, Metric]] = []
    for name, metric in metrics.items():
        if not name.startswith("subgroup.") or name.count(".") < 2:
            continue
        attribute, rest = name[len("subgroup."):].split(".", 1)
        if _is_heterogeneity(rest) or rest.endswith(".gap"):
            continue
        if rest.endswith(".worst_gap"):
            result = results.setdefault((attribute, rest[: -len(".worst_gap")]), SubgroupResult())
            result.worst_gap = metric
            result.worst_group_name = getattr(metric, "group", None)
        elif ".adjusted_gap." in rest:
            base, group = rest.split(".adjusted_gap.", 1)
            results.setdefault((attribute, base), SubgroupResult()).adjusted[group] = metric
        elif ".gap." in rest:
            base, group = rest.split(".gap.", 1)
            results.setdefault((attribute, base), SubgroupResult()).gaps[group] = metric
        else:
            plain.append((attribute, rest, metric))
    known = {base for _, base in results} | {n for n in metrics if not n.startswith("subgroup.")}
    for attribute, rest, metric in plain:
        candidates = [b for b in known if rest.startswith(b + ".")]
        base = max(candidates, key=len) if candidates else rest.rsplit(".", 1)[0]
        results.setdefault((attribute, base), SubgroupResult()).values[rest[len(base) + 1:]] = metric
    return results


def parse_heterogeneity(metrics: dict[str, Metric]) -> dict[tuple[str, str], Metric]:
    """{(attribute, task): subgroup.<attribute>.<task>.heterogeneity_p}."""
    found = {}
    for name, metric in metrics.items():
        if name.startswith("subgroup.") and name.count(".") == 3:
            _, attribute, task, last = name.split(".")
            if _is_heterogeneity(f"{task}.{last}"):
                found[(attribute, task)] = metric
    return found


def gap_is_significant(gap: Metric | None) -> bool:
    return gap is not None and gap.has_ci and (gap.ci_low > 0 or gap.ci_high < 0)


def subgroup_attributes(run: Run) -> list[str]:
    found = []
    for m in run.methods:
        metrics = run.method_metrics(m)
        found += [attr for attr, _ in parse_subgroups(metrics)] + [attr for attr, _ in parse_heterogeneity(metrics)]
    return list(dict.fromkeys(found))


def format_worst_gap(group: str | None, gap: Metric | None) -> str:
    """`-0.0792 [-0.121, -0.0374] (dark) *`: the gap with its CI, the group, GAP_MARK when the CI excludes 0."""
    if gap is None:
        return "—"
    text = format_metric(gap)
    if group and math.isfinite(gap.value):
        text += f" ({group})"
    return text + (f" {GAP_MARK}" if gap_is_significant(gap) else "")


def format_heterogeneity(metric: Metric | None) -> str:
    if metric is None:
        return "—"
    if not math.isfinite(metric.value):
        return f"NaN ({metric.reason})" if metric.reason else "NaN"
    return format_number(metric.value)


def subgroup_spread_table(run: Run) -> str:
    """Rows = (attribute, metric), columns = methods, cells = the worst group's gap to the rest
    with its CI and the group's name; after each attribute's metrics, a row per task
    (`binary.heterogeneity_p`, `multiclass.heterogeneity_p`) with the permutation p-value."""
    parsed = {m: parse_subgroups(run.method_metrics(m)) for m in run.methods}
    tests = {m: parse_heterogeneity(run.method_metrics(m)) for m in run.methods}
    methods = [m for m in run.methods if parsed[m] or tests[m]]
    rows = []
    for attribute in subgroup_attributes(run):
        metrics = list(dict.fromkeys(metric for m in methods for attr, metric in parsed[m] if attr == attribute))
        for metric in metrics:
            cells, adjusted = [], []
            for m in methods:
                result = parsed[m].get((attribute, metric))
                group, gap = (None, None) if result is None else result.worst(metric)
                cells.append("—" if result is None else format_worst_gap(group, gap))
                adjusted.append(format_worst_gap(group, result.adjusted.get(group)) if result and group else "—")
            rows.append([attribute, metric, *cells])
            if any(cell != "—" for cell in adjusted):
                rows.append([attribute, f"{metric}, source-adjusted", *adjusted])
        for task in HETEROGENEITY_TASKS:
            if any((attribute, task) in tests[m] for m in methods):
                rows.append([attribute, f"{task}.{HETEROGENEITY}",
                             *[format_heterogeneity(tests[m].get((attribute, task))) for m in methods]])
    return markdown_table(rows, ["attribute", "metric", *methods])


def subgroup_detail_table(run: Run, attribute: str) -> str:
    """Every group of one attribute: size, value, gap to the rest (marked when its CI excludes
    0) and the metrics engine's note (why a value is NaN or its CI partial)."""
    rows = []
    for method in run.methods:
        for (attr, metric), result in parse_subgroups(run.method_metrics(method)).items():
            if attr != attribute:
                continue
            for group in result.groups:
                value, gap = result.values.get(group), result.gaps.get(group)
                n = next((m.n for m in (value, gap) if m is not None and m.n is not None), None)
                reasons = list(dict.fromkeys(m.reason for m in (value, gap) if m is not None and m.reason))
                adjusted = result.adjusted.get(group)
                if adjusted is not None and adjusted.reason:
                    reasons.append(f"adjusted: {adjusted.reason}")
                rows.append([method, metric, group, "—" if n is None else n,
                             _value_only(value), _value_only(gap)
                             + (f" {GAP_MARK}" if gap_is_significant(gap) else ""),
                             "—" if adjusted is None else _value_only(adjusted)
                             + (f" {GAP_MARK}" if gap_is_significant(adjusted) else ""),
                             "; ".join(reasons)])
    return markdown_table(rows, ["method", "metric", "group", "n", "value", "gap vs rest", "source-adjusted gap",
                                 "note"])


def confounding_table(run: Run) -> str:
    """Per attribute: Cramér's V with the image source and with the class (the run's test images,
    run.json "confounding"), and the malignant share per group; empty for a run that did not record it."""
    rows = []
    for attribute, entry in (run.info.get("confounding") or {}).items():
        shares = ", ".join(f"{group} {100 * share:.0f}%" for group, share in entry["malignant_share"].items())
        rows.append([attribute, _association(entry["source"]), _association(entry["class"]), shares])
    if not rows:
        return ""
    return markdown_table(rows, ["attribute", "Cramér's V with source", "Cramér's V with class (dx)",
                                 "malignant share per group"])


def confounding_counts(run: Run, attribute: str) -> str:
    """The attribute x source image counts of the run's test images (empty when not recorded)."""
    entry = ((run.info.get("confounding") or {}).get(attribute) or {}).get("source")
    if not entry or not entry["rows"]:
        return ""
    return markdown_table([[group, *counts] for group, counts in zip(entry["rows"], entry["counts"])],
                          [f"{attribute} × source", *entry["columns"]])


def _association(entry: dict | None) -> str:
    if entry is None:
        return "—"
    if entry["cramers_v"] is None or not math.isfinite(entry["cramers_v"]):  # run.json writes NaN as null
        return f"NaN ({entry['reason']})" if entry.get("reason") else "NaN"
    return f"{entry['cramers_v']:.2f} (χ² p {format_p(entry['chi2_p'])}, n {entry['n']:,})"


def _value_only(metric: Metric | None) -> str:
    """Like format_metric, but a NaN's reason goes to its own column."""
    if metric is not None and not math.isfinite(metric.value):
        return "NaN"
    return format_metric(metric)
