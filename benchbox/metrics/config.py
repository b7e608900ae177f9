"""The metric suites as data: `metrics/suites.yaml` at the repository root, read and checked here.

Boards, metric directions, bootstrap settings and subgroup rules are data so that a user can
read and change them without touching code; a malformed file fails with the key to fix.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

import yaml

from ..errors import BenchboxError
from ..package_data import metrics_dir

DEFAULT_SUITES = metrics_dir() / "suites.yaml"  # $BENCHBOX_METRICS, else the suites shipped with benchbox
TASKS = ("multiclass", "binary")
CI_METHODS = ("bca", "percentile")


@dataclass(frozen=True)
class BootstrapSettings:
    n_resamples: int
    alpha: float
    seed: int
    method: str  # "bca" (percentile fallback when degenerate) or "percentile"


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    tasks: tuple[str, ...]  # native tasks of the methods that appear on the board
    primary: str
    metrics: tuple[str, ...]
    per_class: tuple[str, ...]  # metric families shown as <metric>.<class>
    subgroup_metrics: tuple[str, ...]


@dataclass(frozen=True)
class MetricsConfig:
    bootstrap: BootstrapSettings
    min_subgroup_size: int
    subgroup_attributes: tuple[str, ...]
    age_band_edges: tuple[float, ...]
    ita_light_dark_cut: float
    boards: Mapping[str, Board]
    directions: Mapping[str, bool | None]  # read-only views: the config is shared (cached)
    source: str  # the file it was read from, for messages
    heterogeneity_permutations: int = 2000  # subgroups.heterogeneity_permutations
    heterogeneity_seed: int = 0  # subgroups.heterogeneity_seed
    adjust_for: str | None = "source"  # subgroups.adjust_for: the manifest column gaps are stratified by
    min_stratum_size: int = 15  # subgroups.min_stratum_size: images of a group, and of its rest, in one stratum

    def higher_is_better(self, name: str) -> bool | None:
        """Direction of a metric name, including per-class, runner and subgroup names."""
        if name.startswith("subgroup."):
            parts = name.split(".")
            rest = ".".join(parts[2:])
            if len(parts) < 4:
                raise BenchboxError(f"{name!r} is not a subgroup metric name (subgroup.<attribute>.<metric>.<group>)")
            if rest.endswith((".worst_gap", ".heterogeneity_p")) or ".gap." in rest or ".adjusted_gap." in rest:
                return None  # signed gaps and p-values have no better direction
            if rest.endswith(".gap"):
                return False  # the max - min gap of run folders written before it was dropped
            return self.higher_is_better(rest.rsplit(".", 1)[0])
        if name in self.directions:
            return self.directions[name]
        for pattern, direction in self.directions.items():
            if "*" in pattern and fnmatch.fnmatchcase(name, pattern):
                return direction
        raise BenchboxError(f"{self.source}: no direction for metric {name!r}; add it under 'directions'.")

    def subgroup_metrics(self, task: str) -> tuple[str, ...]:
        """Metrics computed per subgroup for a method of `task`: those of every board it appears on."""
        names: list[str] = []
        for board in self.boards.values():
            if task in board.tasks:
                names += [m for m in board.subgroup_metrics if m not in names]
        return tuple(names)


def load_config(path: str | Path | None = None) -> MetricsConfig:
    """Read and check the suites file (default: `metrics/suites.yaml` in the repository)."""
    return _load(str(Path(path or DEFAULT_SUITES).resolve()))


def higher_is_better(name: str, config: MetricsConfig | None = None) -> bool | None:
    """True if a larger value of metric `name` is better, False if smaller, None if neither."""
    return (config or load_config()).higher_is_better(name)


@lru_cache(maxsize=8)
def _load(path: str) -> MetricsConfig:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise BenchboxError(
            f"metric suites file {path} not found; restore metrics/suites.yaml from the repository."
        ) from None
    except yaml.YAMLError as error:
        raise BenchboxError(f"{path}: not valid YAML ({error}).") from None
    reader = _Reader(path, data)
    boot = reader.section("bootstrap")
    bootstrap = BootstrapSettings(
        n_resamples=reader.integer(boot, "bootstrap.n_resamples", minimum=0),
        alpha=reader.number(boot, "bootstrap.alpha", low=0.0, high=1.0),
        seed=reader.integer(boot, "bootstrap.seed", minimum=0),
        method=reader.choice(boot, "bootstrap.method", CI_METHODS),
    )
    groups = reader.section("subgroups")
    directions = reader.section("directions")
    for key, value in directions.items():
        if value is not None and not isinstance(value, bool):
            raise BenchboxError(f"{path}: directions.{key} must be true, false or null, not {value!r}.")
    config = MetricsConfig(
        bootstrap=bootstrap,
        min_subgroup_size=reader.integer(groups, "subgroups.min_size", minimum=1),
        subgroup_attributes=tuple(reader.strings(groups, "subgroups.attributes")),
        age_band_edges=tuple(float(x) for x in reader.value(groups, "subgroups.age_band_edges", list)),
        ita_light_dark_cut=reader.number(groups, "subgroups.ita_light_dark_cut"),
        boards=MappingProxyType({name: reader.board(name, spec) for name, spec in reader.section("boards").items()}),
        directions=MappingProxyType(dict(directions)),
        source=path,
        heterogeneity_permutations=reader.integer(groups, "subgroups.heterogeneity_permutations", minimum=0),
        heterogeneity_seed=reader.integer(groups, "subgroups.heterogeneity_seed", minimum=0),
        adjust_for=groups.get("adjust_for", "source"),
        min_stratum_size=(reader.integer(groups, "subgroups.min_stratum_size", minimum=1)
                          if "min_stratum_size" in groups else 15),
    )
    edges = config.age_band_edges
    if not edges or any(b <= a for a, b in zip(edges, edges[1:])):
        raise BenchboxError(f"{path}: subgroups.age_band_edges must be increasing numbers, got {list(edges)}.")
    for board in config.boards.values():
        for metric in (*board.metrics, *board.subgroup_metrics):
            config.higher_is_better(metric)  # every shown metric needs a direction
    return config


class _Reader:
    """Typed access to the YAML with messages that name the file and the key."""

    def __init__(self, path: str, data: object) -> None:
        if not isinstance(data, dict):
            raise BenchboxError(f"{path}: expected a mapping at the top level.")
        self.path, self.data = path, data

    def section(self, key: str) -> dict:
        return self.value(self.data, key, dict)

    def value(self, mapping: dict, dotted: str, kind: type | tuple[type, ...]) -> object:
        key = dotted.rsplit(".", 1)[-1]
        if key not in mapping:
            raise BenchboxError(f"{self.path}: missing key {dotted!r}.")
        value = mapping[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            expected = " or ".join(k.__name__ for k in kinds)
            raise BenchboxError(f"{self.path}: {dotted} must be of type {expected}, not {value!r}.")
        return value

    def integer(self, mapping: dict, dotted: str, minimum: int) -> int:
        value = self.value(mapping, dotted, int)
        if value < minimum:
            raise BenchboxError(f"{self.path}: {dotted} must be at least {minimum}, not {value}.")
        return value

    def number(self, mapping: dict, dotted: str, low: float | None = None, high: float | None = None) -> float:
        value = float(self.value(mapping, dotted, (int, float)))
        if (low is not None and value <= low) or (high is not None and value >= high):
            raise BenchboxError(f"{self.path}: {dotted} must lie strictly between {low} and {high}, not {value}.")
        return value

    def choice(self, mapping: dict, dotted: str, options: tuple[str, ...]) -> str:
        value = self.value(mapping, dotted, str)
        if value not in options:
            raise BenchboxError(f"{self.path}: {dotted} must be one of {list(options)}, not {value!r}.")
        return value

    def strings(self, mapping: dict, dotted: str) -> list[str]:
        values = self.value(mapping, dotted, list)
        if not all(isinstance(v, str) for v in values):
            raise BenchboxError(f"{self.path}: {dotted} must be a list of names, not {values!r}.")
        return values

    def board(self, name: str, spec: object) -> Board:
        if not isinstance(spec, dict):
            raise BenchboxError(f"{self.path}: boards.{name} must be a mapping.")
        prefix = f"boards.{name}"
        tasks = self.strings(spec, f"{prefix}.tasks")
        if not tasks or set(tasks) - set(TASKS):
            raise BenchboxError(f"{self.path}: {prefix}.tasks must name tasks among {list(TASKS)}, not {tasks}.")
        metrics = self.strings(spec, f"{prefix}.metrics")
        primary = self.value(spec, f"{prefix}.primary", str)
        if primary not in metrics:
            raise BenchboxError(f"{self.path}: {prefix}.primary {primary!r} must be one of the board's metrics.")
        return Board(
            name=name,
            title=self.value(spec, f"{prefix}.title", str),
            tasks=tuple(tasks),
            primary=primary,
            metrics=tuple(metrics),
            per_class=tuple(self.strings(spec, f"{prefix}.per_class")),
            subgroup_metrics=tuple(self.strings(spec, f"{prefix}.subgroup_metrics")),
        )
