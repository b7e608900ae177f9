"""The method registry: one generic `Registry`, the method cards, and the plugin entry points.

Where methods come from, in order:
1. the YAML cards shipped with benchbox (the checkout's top-level `registry/` folder, installed as
   the package data `benchbox._registry`), or those of `$BENCHBOX_REGISTRY` / `benchbox ls
   --registry DIR`, one per method; files named `_*.yaml` are shared bases that cards `include:`;
2. the `benchbox.methods` entry-point group of installed packages; an entry point names either
   a card file inside a package (`my_pkg:card.yaml`, read without importing the package) or a
   `Method` class (`my_pkg.module:MyMethod`, whose `card` class attribute holds the card);
3. classes decorated with `@register_method` in this session that have no card elsewhere
   (again with their card in the `card` class attribute).

A method is declared once: a carded method's name, task, explainers and needs-masks are its card's
(the class declares none of them, and `MethodCard.create` hands them to the instance); a method
without a YAML card declares them as class attributes. Listing reads cards only, so `benchbox ls`
never imports torch; a method's class is imported when the method is created.
"""

from __future__ import annotations

import copy
import difflib
import functools
import importlib
import importlib.util
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, Iterator, TypeVar

import yaml

from .errors import BenchboxError
from .methods.base import PROFILES, TASKS, Method, RunContext
from .package_data import REGISTRY_ENV, cards_dir

ENTRY_POINT_GROUP = "benchbox.methods"
REQUIRED_KEYS = ("name", "import_path", "task", "profiles")
OPTIONAL_KEYS = ("explainers", "needs_masks", "summary", "paper", "claims", "notes", "include", "defaults", "fit_of",
                 "default_run", "resources")
BASE_KEYS = ("include", "defaults", "profiles", "resources")  # all a shared base (`_*.yaml`) may hold: settings
RESOURCE_KEYS = ("cpus", "gpus", "memory_gb")  # what one job asks a cluster for (`resources:`), never a setting
DECLARED_ONCE = ("name", "task", "explainers", "needs_masks")  # by the card, or by a class without a card

T = TypeVar("T")


class Registry(Generic[T]):
    """Names to things. Registering a taken name raises; asking for an unknown one suggests the closest."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}

    def register(self, name: str, item: T, origin: str = "") -> T:
        if name in self._items:
            first = f" by {self._origins[name]}" if self._origins[name] else ""
            again = f" (again by {origin})" if origin else ""
            raise BenchboxError(f"{self.kind} {name!r} is already registered{first}{again}; give one of them another name.")
        self._items[name] = item
        self._origins[name] = origin
        return item

    def get(self, name: str) -> T:
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(self._items)) or "none"
            raise BenchboxError(f"unknown {self.kind} {name!r}.{hint} Known: {known}.")
        return self._items[name]

    def origin(self, name: str) -> str:
        self.get(name)
        return self._origins[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


METHOD_CLASSES: Registry[type[Method]] = Registry("method class")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: register a `Method` subclass under its `name` (duplicate names raise)."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"@register_method expects a Method subclass, got {cls!r}")
    if getattr(cls, "task", None) not in TASKS:
        raise BenchboxError(f"method class {cls.__qualname__} declares task {getattr(cls, 'task', None)!r}; use one of {TASKS}.")
    METHOD_CLASSES.register(cls.name, cls, origin=_import_path_of(cls))
    return cls


def _import_path_of(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


@dataclass(frozen=True)
class MethodCard:
    """What a method is and how it is run in each profile: the parsed form of a YAML card."""

    name: str
    import_path: str  # "package.module:ClassName"
    task: str
    profiles: dict[str, dict[str, Any]]
    explainers: tuple[str, ...] = ()
    needs_masks: bool = False
    summary: str = ""
    paper: dict[str, Any] = field(default_factory=dict)  # reference, and the protocol behind its claims
    claims: dict[str, Any] = field(default_factory=dict)  # metric name -> number or {value, note}: claims, never results
    notes: str = ""  # how the paper was read, and how each profile adapts it
    fit_of: str = ""  # a variant's base method, whose trained model it uses (only post-fit settings differ)
    default_run: bool = True  # part of `benchbox run --all`; false for readings that cost much and add nothing on a CPU
    resources: dict[str, dict[str, float]] = field(default_factory=dict)  # profile -> cpus/gpus/memory_gb per job
    source: str = ""  # where the card came from (a file or an entry point)
    from_class: bool = False  # built from a class's attributes (no YAML card), which then declare DECLARED_ONCE

    def settings(self, profile: str) -> dict[str, Any]:
        """A copy of this profile's settings (always with `input_size`)."""
        if profile not in self.profiles:
            raise BenchboxError(f"method {self.name!r} has no profile {profile!r}; choose one of {sorted(self.profiles)} ({self.source}).")
        return copy.deepcopy(self.profiles[profile])

    def input_size(self, profile: str) -> int:
        return int(self.settings(profile)["input_size"])

    def job_resources(self, profile: str) -> dict[str, float]:
        """What one job of this profile asks a cluster for (`resources:`); {} when the card says nothing.
        Not a setting: a model trained with 2 CPUs is the same model, so fit keys never see it."""
        return dict(self.resources.get(profile, {}))

    def context(
        self,
        profile: str,
        *,
        seed: int = 0,
        device: str = "cpu",
        pretrained: bool | None = None,
        weights_dir: Path | None = None,
        checkpoint_dir: Path | None = None,
        progress: bool = True,
    ) -> RunContext:
        """The run context of one fit; `pretrained=None` takes the profile's default (paper: True)."""
        settings = self.settings(profile)
        return RunContext(
            profile=profile,
            seed=seed,
            device=device,
            checkpoint_dir=checkpoint_dir,
            pretrained=bool(settings.get("pretrained", False)) if pretrained is None else pretrained,
            weights_dir=None if weights_dir is None else Path(weights_dir),
            settings=settings,
            progress=progress,
        )

    def load_class(self) -> type[Method]:
        """Import the method's class; a carded method's class must leave its declaration to the card."""
        module_name, _, qualname = self.import_path.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as error:
            raise BenchboxError(f"method {self.name!r}: cannot import {self.import_path} named by {self.source}: {error}") from error
        if not (isinstance(obj, type) and issubclass(obj, Method)):
            raise BenchboxError(f"method {self.name!r}: {self.import_path} ({self.source}) is not a benchbox Method subclass.")
        repeated = [] if self.from_class else [key for key in DECLARED_ONCE if _class_declares(obj, key)]
        if repeated:
            raise BenchboxError(
                f"method {self.name!r}: the class {self.import_path} declares {repeated}, which its card ({self.source}) "
                "declares; a method is declared once, so delete those class attributes (the card's reach the instance)."
            )
        return obj

    def resolved(self) -> dict[str, Any]:
        """The card as plain data, profiles resolved: what a run folder keeps of each method it ran."""
        return {"name": self.name, "import_path": self.import_path, "task": self.task, "explainers": list(self.explainers),
                "needs_masks": self.needs_masks, "fit_of": self.fit_of or None, "default_run": self.default_run,
                "summary": self.summary,
                "paper": copy.deepcopy(self.paper), "claims": copy.deepcopy(self.claims), "notes": self.notes,
                "profiles": copy.deepcopy(self.profiles), "source": self.source}

    def create(self) -> Method:
        """A fresh, untrained instance of the method, carrying the card's name, task, explainers and needs-masks."""
        method = self.load_class()()
        method.name, method.task = self.name, self.task
        method.explainers, method.needs_masks = self.explainers, self.needs_masks
        return method


def citation_text(paper: Any) -> str:
    """A card's `paper.citation` as one line: authors (year). Title. Venue. doi:... (else its `reference`)."""
    if not isinstance(paper, dict):
        return str(paper or "no paper on the card")
    cited = paper.get("citation")
    if not isinstance(cited, dict) or not cited.get("title"):  # a text with nothing to cite says so in `note`
        note = cited.get("note") if isinstance(cited, dict) else cited
        return str(note or paper.get("reference") or "no citation on the card")
    authors = cited.get("authors") or []
    text = ", ".join(authors) if isinstance(authors, list) else str(authors)
    text += f" ({cited['year']}). " if cited.get("year") else ". "
    text += str(cited["title"]).rstrip(".") + "."
    if cited.get("venue"):
        text += f" {cited['venue']}."
    if cited.get("doi"):
        text += f" doi:{cited['doi']}"
    return text.strip()


def _class_declares(cls: type, key: str) -> bool:
    """Whether `cls` or a base below `Method` assigns the class attribute `key`."""
    for klass in cls.__mro__:
        if klass is Method:
            return False
        if key in vars(klass):
            return True
    return False


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`: mappings merge key by key (recursively); anything else, lists too, replaces."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
    return out


def _read_yaml(path: Path, source: str) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError) as error:
        raise BenchboxError(f"cannot read {source}: {error}") from error


def _included(data: dict[str, Any], source: str, folder: Path | None, chain: tuple[Path, ...]) -> list[dict[str, dict[str, Any]]]:
    """The resolved profiles of each file named by `include:` (a name or a list, relative to `folder`)."""
    names = data.get("include") or []
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
        raise BenchboxError(f"{source}: include must be a file name or a list of file names, got {data.get('include')!r}.")
    if names and folder is None:
        raise BenchboxError(f"{source}: include works in YAML card files only; write the shared settings into `defaults` or each profile.")
    layers = []
    for name in names:
        path = Path(folder, name)
        if path.resolve() in {p.resolve() for p in chain}:
            cycle = " -> ".join(p.name for p in (*chain, path))
            raise BenchboxError(f"{source}: include cycle {cycle}; a base must not include the card or base that includes it.")
        if not path.is_file():
            raise BenchboxError(f"{source}: included file {name!r} not found (looked for {path}).")
        base_source = f"{path} (included by {source})"
        base = _read_yaml(path, base_source)
        if not isinstance(base, dict):
            raise BenchboxError(f"{base_source}: a shared base must be a mapping with {list(BASE_KEYS)}, got {type(base).__name__}.")
        extra = sorted(set(base) - set(BASE_KEYS))
        if extra:
            raise BenchboxError(
                f"{base_source}: a shared base holds only {list(BASE_KEYS)} (settings), not {extra}; "
                "write what declares a method (name, task, explainers, ...) in the method's own card."
            )
        layers.append(_resolved_profiles(base, base_source, path.parent, (*chain, path)))
    return layers


def _resolved_profiles(data: dict[str, Any], source: str, folder: Path | None, chain: tuple[Path, ...]) -> dict[str, dict[str, Any]]:
    """Each profile's settings, lowest precedence first: the included bases in order, `defaults`, the profile's own."""
    defaults = data.get("defaults") or {}
    own = data.get("profiles") or {}
    if not isinstance(defaults, dict):
        raise BenchboxError(f"{source}: defaults (the settings every profile shares) must be a mapping, got {type(defaults).__name__}.")
    if not isinstance(own, dict):
        raise BenchboxError(f"{source}: profiles must be a mapping of profile name to settings, got {type(own).__name__}.")
    unknown = sorted(set(own) - set(PROFILES))
    if unknown:
        raise BenchboxError(f"{source}: unknown profile(s) {unknown}; the profiles are {list(PROFILES)}.")
    for profile, settings in own.items():
        if settings is not None and not isinstance(settings, dict):
            raise BenchboxError(f"{source}: profile {profile!r} must be a mapping of settings, got {type(settings).__name__}.")
    layers = [*_included(data, source, folder, chain), {profile: defaults for profile in PROFILES} if defaults else {},
              {profile: settings or {} for profile, settings in own.items()}]  # fmt: skip
    resolved = {}
    for profile in PROFILES:
        present = [layer[profile] for layer in layers if profile in layer]
        if present:
            resolved[profile] = functools.reduce(_merge, present, {})
    return resolved


def _resolved_resources(data: dict[str, Any], source: str, folder: Path | None) -> dict[str, dict[str, float]]:
    """Each profile's job resources: the included bases' in order, then the card's own, key by key.
    Called after `_resolved_profiles`, which has refused include cycles and missing files."""
    names = data.get("include") or []
    layers = [_resolved_resources(_read_yaml(Path(folder, name), source), f"{Path(folder, name)} (included by {source})",
                                  Path(folder, name).parent)
              for name in ([names] if isinstance(names, str) else names)]
    own = data.get("resources") or {}
    if not isinstance(own, dict) or set(own) - set(PROFILES):
        raise BenchboxError(f"{source}: resources must map profiles {list(PROFILES)} to {{cpus, gpus, memory_gb}}, got {own!r}.")
    own = {profile: {} if wanted is None else wanted for profile, wanted in own.items()}
    for profile, wanted in own.items():
        bad = ({key: value for key, value in wanted.items() if key not in RESOURCE_KEYS or isinstance(value, bool)
                or not isinstance(value, (int, float)) or value < 0} if isinstance(wanted, dict) else {"": wanted})
        if bad:
            raise BenchboxError(f"{source}: resources of profile {profile!r}: {bad!r} is not allowed; give {list(RESOURCE_KEYS)} "
                                "as numbers of 0 or more (e.g. {gpus: 1, cpus: 4, memory_gb: 16}).")
    return {profile: functools.reduce(_merge, [layer[profile] for layer in [*layers, own] if profile in layer], {})
            for profile in PROFILES if any(profile in layer for layer in [*layers, own])}


def card_from_dict(data: Any, source: str, path: Path | None = None, from_class: bool = False) -> MethodCard:
    """Validate a card's contents (from YAML or a class's `card` attribute) and resolve its profiles.

    `include:` files are found beside the card file `path` (None: a card without a file); errors name the source.
    """
    if not isinstance(data, dict):
        raise BenchboxError(f"{source}: a method card must be a mapping of keys to values, got {type(data).__name__}.")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    unknown = sorted(set(data) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if missing or unknown:
        parts = ([f"missing keys {missing}"] if missing else []) + ([f"unknown keys {unknown}"] if unknown else [])
        raise BenchboxError(f"{source}: {'; '.join(parts)}. A card has {list(REQUIRED_KEYS)} and optionally {list(OPTIONAL_KEYS)}.")
    if data["task"] not in TASKS:
        raise BenchboxError(f"{source}: task {data['task']!r} is not one of {TASKS}.")
    if ":" not in str(data["import_path"]):
        raise BenchboxError(f"{source}: import_path {data['import_path']!r} must look like 'package.module:ClassName'.")
    stated = data["profiles"]
    if not isinstance(stated, dict) or sorted(stated) != sorted(PROFILES):  # each card names its profiles, bases or not
        got = sorted(stated) if isinstance(stated, dict) else stated
        raise BenchboxError(f"{source}: profiles must define exactly {list(PROFILES)}, got {got}.")
    profiles = _resolved_profiles(data, source, None if path is None else path.parent, () if path is None else (path,))
    for profile, settings in profiles.items():
        size = settings.get("input_size")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise BenchboxError(f"{source}: profile {profile!r} needs a positive integer input_size.")
    return MethodCard(
        name=str(data["name"]),
        import_path=str(data["import_path"]),
        task=data["task"],
        profiles={name: dict(settings) for name, settings in profiles.items()},
        explainers=tuple(data.get("explainers") or ()),
        needs_masks=bool(data.get("needs_masks", False)),
        summary=str(data.get("summary") or "").strip(),
        paper=dict(data.get("paper") or {}),
        claims=dict(data.get("claims") or {}),
        notes=str(data.get("notes") or "").strip(),
        fit_of=str(data.get("fit_of") or ""),
        default_run=bool(data.get("default_run", True)),
        resources=_resolved_resources(data, source, None if path is None else path.parent),
        source=source,
        from_class=from_class,
    )


def read_card(path: Path, source: str | None = None) -> MethodCard:
    """Parse one YAML card file, with the bases it includes (found beside it)."""
    path = Path(path)
    return card_from_dict(_read_yaml(path, f"method card {path}"), source or str(path), path=path)


def card_from_class(cls: type[Method], source: str) -> MethodCard:
    """The card of a method that ships as a class: its `card` attribute plus what the class declares."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise BenchboxError(f"{source} does not name a benchbox Method subclass or a card file (.yaml), got {cls!r}.")
    if not isinstance(cls.card, dict):
        raise BenchboxError(f"{source}: class {cls.__qualname__} has no `card` attribute; give it one (a dict like a YAML card) or ship a YAML card.")
    repeated = sorted(set(cls.card) & {*DECLARED_ONCE, "import_path"})
    if repeated:
        raise BenchboxError(
            f"{source}: the `card` of class {cls.__qualname__} repeats {repeated}, which a method without a YAML card "
            "declares as class attributes; delete them from `card`."
        )
    data = {
        **cls.card,
        "name": cls.name,
        "import_path": _import_path_of(cls),
        "task": cls.task,
        "explainers": list(cls.explainers),
        "needs_masks": cls.needs_masks,
    }
    return card_from_dict(data, source, from_class=True)


def registry_dir() -> Path:
    """The folder of the method cards: $BENCHBOX_REGISTRY, else the cards shipped with benchbox."""
    path = cards_dir()
    if not path.is_dir():
        raise BenchboxError(
            f"the method card folder {path} does not exist; set {REGISTRY_ENV} (or pass `benchbox ls --registry`) "
            "to the folder holding the *.yaml cards."
        )
    return path


def card_files(folder: Path) -> list[Path]:
    """The method cards of a folder: its *.yaml files except the shared bases (`_*.yaml`)."""
    return [path for path in sorted(Path(folder).glob("*.yaml")) if not path.name.startswith("_")]


def _package_file(package: str, resource: str, source: str) -> Path:
    """A file inside an installed package, found without executing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as error:
        raise BenchboxError(f"{source}: cannot find package {package!r}: {error}") from error
    if spec is None or not spec.submodule_search_locations:
        raise BenchboxError(f"{source}: {package!r} is not an installed package; name a card as 'package:card.yaml'.")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / resource
        if candidate.is_file():
            return candidate
    raise BenchboxError(f"{source}: package {package!r} holds no file {resource!r}.")


def entry_point_cards() -> list[MethodCard]:
    """Cards of the third-party methods installed under the `benchbox.methods` entry-point group."""
    cards = []
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {entry.name} = {entry.value} (group {ENTRY_POINT_GROUP})"
        if entry.value.endswith((".yaml", ".yml")):
            package, _, resource = entry.value.partition(":")
            card = read_card(_package_file(package, resource, source), source)
        else:
            try:
                cls = entry.load()
            except Exception as error:  # a broken plugin must be named, whatever it raised
                raise BenchboxError(f"{source}: importing it failed: {type(error).__name__}: {error}") from error
            card = card_from_class(cls, source)
        if card.name != entry.name:
            raise BenchboxError(f"{source}: the entry point's name must be the method's name {card.name!r}.")
        cards.append(card)
    return cards


def method_cards(directory: Path | None = None, entry_points: bool = True) -> Registry[MethodCard]:
    """Every method benchbox knows, by name (built-in cards, plugins, session registrations)."""
    cards: Registry[MethodCard] = Registry("method")
    folder = registry_dir() if directory is None else Path(directory)
    if not folder.is_dir():
        raise BenchboxError(f"the method card folder {folder} does not exist; name a folder holding *.yaml cards.")
    for path in card_files(folder):
        card = read_card(path)
        cards.register(card.name, card, origin=str(path))
    for card in entry_point_cards() if entry_points else []:
        cards.register(card.name, card, origin=card.source)
    session = {name: METHOD_CLASSES.get(name) for name in METHOD_CLASSES}
    for name, cls in session.items():  # duplicates first, so they are named before any other complaint
        if name in cards and cards.get(name).import_path != _import_path_of(cls):
            raise BenchboxError(
                f"method {name!r} is registered twice: class {_import_path_of(cls)} and {cards.origin(name)} "
                f"(which imports {cards.get(name).import_path}); rename one."
            )
    for name, cls in session.items():
        if name not in cards:
            source = f"@register_method on {_import_path_of(cls)}"
            cards.register(name, card_from_class(cls, source), origin=source)
    return cards


def get_card(name: str) -> MethodCard:
    """One method's card; an unknown name raises with the closest known name."""
    return method_cards().get(name)


def create_method(name: str) -> Method:
    """A fresh instance of the named method (imports its module)."""
    return get_card(name).create()
