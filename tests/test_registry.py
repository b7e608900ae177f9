"""The registry: generic name registry, method cards, decorator registration, plugin entry points."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchbox.data.arrays import ImageSet
from benchbox.errors import BenchboxError
from benchbox.labels import CLASSES
from benchbox.methods.base import PROFILES, Method
from benchbox.methods.commands import run_ls
from benchbox.registry import (
    DECLARED_ONCE,
    METHOD_CLASSES,
    Registry,
    card_from_dict,
    entry_point_cards,
    get_card,
    method_cards,
    read_card,
    register_method,
    registry_dir,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
ALL_METHODS = {"msfa", "soft_attention", "resnet50", "recall_ensemble", "recall_ensemble_recalibrated", "dual_task", "xception",
               "inception_v3", "efficientnet_b0", "dual_task_unet_r34", "efficientnet_b0_128"}
BASELINES = {"colour_knn"}  # benchbox's own known-answer methods (no paper)


def test_registry_refuses_duplicates_and_suggests_closest_name():
    registry: Registry[int] = Registry("widget")
    registry.register("alpha", 1, origin="first.yaml")
    with pytest.raises(BenchboxError, match=r"widget 'alpha' is already registered by first.yaml \(again by second.yaml\)"):
        registry.register("alpha", 2, origin="second.yaml")
    registry.register("beta", 2)
    assert registry.get("beta") == 2 and registry.names() == ["alpha", "beta"] and len(registry) == 2
    with pytest.raises(BenchboxError, match=r"unknown widget 'alpah'\. Did you mean 'alpha'\?"):
        registry.get("alpah")
    with pytest.raises(BenchboxError, match=r"unknown widget 'zzz'\. Known: alpha, beta\."):
        registry.get("zzz")


def test_unknown_method_name_suggests_the_registered_one():
    with pytest.raises(BenchboxError, match="Did you mean 'soft_attention'"):
        get_card("soft_atention")


def test_every_design_method_has_a_complete_card():
    cards = method_cards(entry_points=False)
    assert ALL_METHODS <= set(cards.names())
    for name in ALL_METHODS:
        card = cards.get(name)
        assert Path(card.source).name == f"{name}.yaml"
        assert sorted(card.profiles) == sorted(PROFILES)
        assert card.input_size("paper") == (299 if name in ("xception", "inception_v3", "recall_ensemble", "recall_ensemble_recalibrated") else 128 if name == "efficientnet_b0_128" else 224)
        assert card.settings("paper").get("pretrained") is True and not card.settings("quick").get("pretrained")
        cited = card.paper.get("citation") or {}
        # the full citation, or (binary_cnn_xai.txt, which opens with its abstract) the statement that the text has none
        assert (cited.get("title") and cited.get("authors")) or "gives no authors, title" in cited.get("note", "")
        assert card.paper.get("protocol") and card.notes and card.paper.get("reported")
        assert card.explainers
    assert cards.get("msfa").claims["accuracy"]["value"] == 0.788
    assert cards.get("dual_task").needs_masks and not cards.get("msfa").needs_masks
    assert cards.get("recall_ensemble").task == "binary" and cards.get("soft_attention").task == "multiclass"
    assert cards.get("recall_ensemble_recalibrated").fit_of == "recall_ensemble"
    assert {name for name in ALL_METHODS if not cards.get(name).default_run} == {"dual_task_unet_r34", "efficientnet_b0_128"}


def test_card_context_takes_profile_settings_and_pretrained_default():
    card = get_card("msfa")
    quick, paper = card.context("quick", seed=3), card.context("paper")
    assert quick.settings == card.profiles["quick"] and quick.seed == 3 and quick.pretrained is False
    assert paper.pretrained is True and card.context("paper", pretrained=False).pretrained is False
    quick.settings["epochs"] = 999  # a copy: the card is not changed
    assert card.profiles["quick"]["epochs"] != 999
    with pytest.raises(BenchboxError, match="has no profile 'fast'"):
        card.settings("fast")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("task"), r"missing keys \['task'\]"),
        (lambda d: d.update(colour="red"), r"unknown keys \['colour'\]"),
        (lambda d: d.update(task="regression"), "task 'regression' is not one of"),
        (lambda d: d["profiles"].pop("paper"), "profiles must define exactly"),
        (lambda d: d["profiles"]["quick"].pop("input_size"), "profile 'quick' needs a positive integer input_size"),
        (lambda d: d.update(import_path="no_colon"), "must look like 'package.module:ClassName'"),
    ],
)
def test_bad_cards_are_refused_with_the_file_named(tmp_path, change, message):
    for base in registry_dir().glob("_*.yaml"):  # the bases msfa.yaml includes
        shutil.copy(base, tmp_path)
    data = yaml.safe_load((registry_dir() / "msfa.yaml").read_text())
    change(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(BenchboxError, match=message) as error:
        read_card(path)
    assert str(path) in str(error.value)


def test_hosted_classes_leave_their_declaration_to_the_card():
    for name in ALL_METHODS:
        card = get_card(name)
        cls = card.load_class()
        assert not any(key in vars(klass) for klass in cls.__mro__[: cls.__mro__.index(Method)] for key in DECLARED_ONCE)
        method = card.create()
        assert (method.name, method.task, method.explainers, method.needs_masks) == (name, card.task, card.explainers, card.needs_masks)
        assert method.classes == (CLASSES if card.task == "multiclass" else ("benign", "malignant"))


def test_a_carded_class_that_declares_itself_too_is_refused():
    card = card_from_dict({"name": "colour_centroid_test", "import_path": f"{__name__}:ColourCentroid", "task": "multiclass",
                           "profiles": {p: {"input_size": 16} for p in PROFILES}}, "a card for ColourCentroid")  # fmt: skip
    with pytest.raises(BenchboxError, match=r"declares \['name', 'task', 'explainers'\], which its card \(a card for ColourCentroid\)"):
        card.create()


def test_a_class_card_that_repeats_a_class_attribute_is_refused():
    class Repeats(ColourCentroid):
        card = {**ColourCentroid.card, "task": "binary"}

    register_method(Repeats)
    try:
        with pytest.raises(BenchboxError, match=r"`card` of class .*Repeats repeats \['task'\]"):
            method_cards(entry_points=False)
    finally:
        METHOD_CLASSES._items.pop("colour_centroid_test")
        METHOD_CLASSES._origins.pop("colour_centroid_test")


def test_listing_cards_does_not_import_torch():
    code = textwrap.dedent(
        """
        import argparse, sys
        from benchbox.methods.commands import run_ls
        run_ls(argparse.Namespace(params=False))
        assert 'torch' not in sys.modules, 'listing imported torch'
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    for name in ALL_METHODS:
        assert name in result.stdout


class ColourCentroid(Method):
    """A torch-free method: nearest class-mean colour (used to test decorator registration)."""

    name = "colour_centroid_test"
    task = "multiclass"
    explainers = ("distance",)
    card = {"profiles": {p: {"input_size": 16} for p in PROFILES}, "summary": "test method"}

    def fit(self, train, val, ctx):
        self.centroids = np.stack([train.images[train.labels == c].mean(axis=(0, 1, 2)) for c in range(7)])

    def predict_proba(self, images):
        distance = np.linalg.norm(images.mean(axis=(1, 2))[:, None, :] - self.centroids[None], axis=2)
        weights = np.exp(-(distance - distance.min(axis=1, keepdims=True)) / 10)
        return weights / weights.sum(axis=1, keepdims=True)

    def explain(self, images, targets, explainer):
        raise NotImplementedError

    def save(self, directory):
        raise NotImplementedError

    def load(self, directory):
        raise NotImplementedError


def test_register_method_decorator_lists_a_class_without_a_yaml_card():
    register_method(ColourCentroid)
    try:
        card = method_cards(entry_points=False).get("colour_centroid_test")
        assert card.import_path == f"{__name__}:ColourCentroid" and card.summary == "test method"
        assert card.source.startswith("@register_method")
        with pytest.raises(BenchboxError, match="'colour_centroid_test' is already registered"):
            register_method(ColourCentroid)
    finally:
        METHOD_CLASSES._items.pop("colour_centroid_test")
        METHOD_CLASSES._origins.pop("colour_centroid_test")


def test_a_class_registered_under_a_carded_name_is_a_duplicate(tmp_path):
    card = {"name": "ghost", "import_path": "elsewhere.module:Ghost", "task": "multiclass",
            "profiles": {p: {"input_size": 16} for p in PROFILES}}  # fmt: skip
    (tmp_path / "ghost.yaml").write_text(yaml.safe_dump(card))

    class Ghost(ColourCentroid):
        name = "ghost"

    register_method(Ghost)
    try:
        with pytest.raises(BenchboxError, match=r"method 'ghost' is registered twice: class .*Ghost and .*ghost.yaml"):
            method_cards(tmp_path, entry_points=False)
    finally:
        METHOD_CLASSES._items.pop("ghost")
        METHOD_CLASSES._origins.pop("ghost")


# --- plugins through the benchbox.methods entry-point group -----------------------------------


def colour_classes(n: int, seed: int) -> ImageSet:
    """16 px images whose mean colour is planted by class (0..6 in turn; 0, 1, 2 are malignant)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 7
    base = np.stack([labels * 30 + 40, 200 - labels * 20, (labels * 70) % 255], axis=1)[:, None, None, :]
    images = np.clip(base + rng.normal(0, 20, (n, 16, 16, 3)), 0, 255).astype(np.uint8)
    return ImageSet(np.array([f"I{seed}_{i}" for i in range(n)]), images, labels, np.arange(n) // 2)


CARD_PLUGIN = '''
"""A third-party method whose card is a YAML file in the package (listed without importing it)."""
import json
from pathlib import Path

import numpy as np

from benchbox.methods.base import Method


class ColourMeans(Method):  # name, task, explainers: its card.yaml
    def fit(self, train, val, ctx):
        self.centroids = np.stack([train.images[train.labels == c].mean(axis=(0, 1, 2)) for c in range(7)])

    def predict_proba(self, images):
        distance = np.linalg.norm(images.mean(axis=(1, 2))[:, None, :] - self.centroids[None], axis=2)
        weights = np.exp(-(distance - distance.min(axis=1, keepdims=True)) / 10)
        return weights / weights.sum(axis=1, keepdims=True)

    def explain(self, images, targets, explainer):
        deviation = np.abs(images - self.centroids[targets][:, None, None, :]).sum(axis=3)
        return deviation / np.maximum(deviation.max(axis=(1, 2), keepdims=True), 1e-9)

    def save(self, directory):
        Path(directory, "centroids.json").write_text(json.dumps(self.centroids.tolist()))

    def load(self, directory):
        self.centroids = np.array(json.loads(Path(directory, "centroids.json").read_text()))
'''

CLASS_PLUGIN = '''
"""A third-party method shipped as a class with its card attribute, built on benchbox's machinery."""
import torch
from torch import nn

from benchbox.methods.torch_method import TorchMethod
from benchbox.training.loop import train_stage, validator
from benchbox.training.recipes import stage_settings, training_batches

SETTINGS = {"input_size": 16, "epochs": 2, "batch_size": 8, "lr": 0.01, "augment": False}


class TinyCNN(TorchMethod):
    name = "tiny_cnn"
    task = "binary"
    explainers = ("gradcam",)
    card = {"profiles": {"smoke": SETTINGS, "quick": SETTINGS, "paper": SETTINGS}, "summary": "a tiny CNN"}

    def build_network(self, settings):
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    def cam_target_layers(self, network):
        return [network[1]]

    def fit(self, train, val, ctx):
        train, val = self.start_fit(train, val, ctx)
        net = self.nets[0]
        loss = nn.CrossEntropyLoss()
        train_stage(net, torch.optim.Adam(net.parameters(), lr=self.settings["lr"]),
                    training_batches(train, train.malignant, 2, self.settings, ctx.seed),
                    lambda n, b: loss(n(b["inputs"]), b["target"]),
                    validator(val.images, val.malignant, "accuracy", ctx.device),
                    stage_settings(self.settings), ctx.device, progress=False)
'''


def _install_plugin(root: Path, dist: str, package: str, files: dict[str, str], entry_points: str) -> None:
    """A package plus a dist-info folder with entry_points.txt: what pip would leave in site-packages."""
    (root / package).mkdir(parents=True)
    for name, text in files.items():
        (root / package / name).write_text(text)
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[benchbox.methods]\n{entry_points}\n")


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    card = {
        "name": "colour_means",
        "import_path": "colour_plugin.model:ColourMeans",
        "task": "multiclass",
        "explainers": ["deviation"],
        "summary": "nearest mean colour",
        "claims": {"accuracy": 0.5},
        "profiles": {p: {"input_size": 16} for p in PROFILES},
    }
    _install_plugin(tmp_path, "colour_plugin", "colour_plugin",
                    {"__init__.py": "", "model.py": CARD_PLUGIN,
                     "card.yaml": yaml.safe_dump(card)},
                    "colour_means = colour_plugin:card.yaml")  # fmt: skip
    _install_plugin(tmp_path, "tiny_plugin", "tiny_plugin", {"__init__.py": "", "model.py": CLASS_PLUGIN},
                    "tiny_cnn = tiny_plugin.model:TinyCNN")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in [m for m in sys.modules if m.startswith(("colour_plugin", "tiny_plugin"))]:
        del sys.modules[module]


def test_plugins_are_listed_from_entry_points(plugins):
    cards = method_cards()
    assert {"colour_means", "tiny_cnn"} <= set(cards.names()) and ALL_METHODS <= set(cards.names())
    assert cards.get("colour_means").claims == {"accuracy": 0.5}
    assert "entry point colour_means" in cards.get("colour_means").source
    assert cards.get("tiny_cnn").task == "binary" and cards.get("tiny_cnn").summary == "a tiny CNN"
    assert "colour_plugin" not in sys.modules  # a card-file entry point is read without importing the package


def test_a_card_file_plugin_is_runnable(plugins):
    card = method_cards().get("colour_means")
    method = card.create()
    train, test = colour_classes(28, seed=0), colour_classes(14, seed=1)
    method.fit(train, train, card.context("smoke"))
    probs = method.predict_proba(test.images)
    assert probs.shape == (14, 7) and np.allclose(probs.sum(axis=1), 1)
    assert (probs.argmax(axis=1) == test.labels).mean() > 0.5  # class colours are planted


def test_a_class_plugin_is_runnable_on_benchbox_machinery(plugins, tmp_path):
    card = method_cards().get("tiny_cnn")
    method = card.create()
    train, test = colour_classes(32, seed=0), colour_classes(8, seed=1)
    method.fit(train, train, card.context("smoke", progress=False))
    probs = method.predict_proba(test.images)
    assert probs.shape == (8, 2) and np.allclose(probs.sum(axis=1), 1)
    method.save(tmp_path / "ckpt")
    again = card.create()
    again.load(tmp_path / "ckpt")
    np.testing.assert_array_equal(again.predict_proba(test.images), probs)


def test_an_entry_point_named_unlike_its_method_is_refused(tmp_path, monkeypatch):
    _install_plugin(tmp_path, "misnamed_plugin", "misnamed_plugin", {"__init__.py": "", "model.py": CLASS_PLUGIN},
                    "not_tiny = misnamed_plugin.model:TinyCNN")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(BenchboxError, match="entry point's name must be the method's name 'tiny_cnn'"):
            entry_point_cards()
    finally:
        for module in [m for m in sys.modules if m.startswith("misnamed_plugin")]:
            del sys.modules[module]


def test_a_broken_plugin_is_named(tmp_path, monkeypatch):
    _install_plugin(tmp_path, "broken_plugin", "broken_plugin", {"__init__.py": "import no_such_module_anywhere\n"},
                    "broken = broken_plugin:Method")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BenchboxError, match=r"entry point broken = broken_plugin:Method .* importing it failed: ModuleNotFoundError"):
        entry_point_cards()


# --- shared settings: include and defaults ------------------------------------------------------


def _write(folder: Path, name: str, data: dict) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _card(**extra) -> dict:
    return {"name": "layered", "import_path": "nowhere:Layered", "task": "binary", **extra}


def test_include_and_defaults_resolve_base_then_defaults_then_profile(tmp_path):
    _write(tmp_path, "_root.yaml", {"profiles": {"paper": {"pretrained": True, "batch_size": 32}}})
    _write(tmp_path, "_family.yaml", {
        "include": "_root.yaml",
        "defaults": {"lr": 0.001, "phase1": {"scheduler": "plateau", "factor": 0.2}, "tta": ["identity", "hflip"]},
        "profiles": {"paper": {"lr": 0.0001}},
    })  # fmt: skip
    path = _write(tmp_path, "layered.yaml", _card(
        include=["_family.yaml"],
        defaults={"batch_size": 16},
        profiles={"smoke": {"input_size": 48, "phase1": {"factor": 0.5}}, "quick": {"input_size": 64, "tta": ["vflip"]},
                  "paper": {"input_size": 224, "batch_size": 64}},
    ))  # fmt: skip
    card = read_card(path)
    assert card.settings("smoke") == {"lr": 0.001, "phase1": {"scheduler": "plateau", "factor": 0.5}, "tta": ["identity", "hflip"],
                                      "batch_size": 16, "input_size": 48}  # fmt: skip
    assert card.settings("quick")["tta"] == ["vflip"]  # lists replace, mappings merge
    # the card's defaults beat everything it includes; the profile's own settings beat its defaults
    assert card.settings("paper") == {"pretrained": True, "batch_size": 64, "lr": 0.0001, "phase1": {"scheduler": "plateau", "factor": 0.2},
                                      "tta": ["identity", "hflip"], "input_size": 224}  # fmt: skip
    assert "pretrained" not in card.settings("quick") and card.context("paper").pretrained is True


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"_base.yaml": {"include": "layered.yaml"}}, r"include cycle layered.yaml -> _base.yaml -> layered.yaml"),
        ({}, r"included file '_base.yaml' not found \(looked for .*_base.yaml\)"),
        ({"_base.yaml": {"task": "multiclass", "profiles": {}}}, r"_base.yaml \(included by .*layered.yaml\): a shared base holds only \['include', 'defaults', 'profiles', 'resources'\] \(settings\), not \['task'\]"),
        ({"_base.yaml": {"profiles": {"fast": {"epochs": 1}}}}, r"_base.yaml \(included by .*\): unknown profile\(s\) \['fast'\]"),
        ({"_base.yaml": {"defaults": [1, 2]}}, r"defaults \(the settings every profile shares\) must be a mapping"),
        ({"_base.yaml": ["not", "a", "mapping"]}, r"a shared base must be a mapping"),
    ],
)
def test_bad_includes_are_refused_with_the_files_named(tmp_path, files, message):
    for name, data in files.items():
        _write(tmp_path, name, data)
    path = _write(tmp_path, "layered.yaml", _card(include="_base.yaml", profiles={p: {"input_size": 16} for p in PROFILES}))
    with pytest.raises(BenchboxError, match=message):
        read_card(path)


def test_a_card_without_a_file_cannot_include():
    data = _card(include="_defaults.yaml", profiles={p: {"input_size": 16} for p in PROFILES})
    with pytest.raises(BenchboxError, match="include works in YAML card files only"):
        card_from_dict(data, "a class's card")


@pytest.fixture
def cards_only(monkeypatch):
    """Only card files: methods other tests registered with @register_method in this session are hidden."""
    monkeypatch.setattr("benchbox.registry.METHOD_CLASSES", {})


def test_bases_are_not_listed_as_methods(cards_only):
    cards = method_cards(entry_points=False)
    bases = sorted(path.stem for path in registry_dir().glob("_*.yaml"))
    assert bases == ["_binary_cnn", "_defaults", "_recall_ensemble", "_resnet50_family"]
    assert not any(name.startswith("_") for name in cards.names()) and set(cards.names()) == ALL_METHODS | BASELINES


def test_the_resnet50_pair_and_the_binary_trio_share_their_bases():
    """What the bases say is what every card that includes them gets (minus what a card overrides)."""
    soft, plain = get_card("soft_attention"), get_card("resnet50")
    for profile in ("quick", "paper"):
        assert soft.settings(profile) == plain.settings(profile)
    assert {k: v for k, v in soft.settings("smoke").items() if k not in ("phase1", "max_train_images")} == \
        {k: v for k, v in plain.settings("smoke").items() if k not in ("phase1", "max_train_images")}  # fmt: skip
    for name in ("xception", "inception_v3", "efficientnet_b0"):
        paper = get_card(name).settings("paper")
        assert (paper["lr"], paper["epochs"], paper["oversample"], paper["num_workers"]) == (0.0001, 30, {"kind": "duplicate", "fraction": 0.5}, 4)


# --- your own card folder: BENCHBOX_REGISTRY, benchbox ls --registry -----------------------------


def test_ls_reads_the_card_folder_it_is_given(tmp_path, capsys, monkeypatch, cards_only):
    data = yaml.safe_load((registry_dir() / "msfa.yaml").read_text())
    data.update(name="msfa_copy", include=[], defaults={}, summary="my copy")
    _write(tmp_path, "msfa_copy.yaml", data)
    assert run_ls(argparse.Namespace(params=False, registry=str(tmp_path))) == 0
    listed = capsys.readouterr().out
    assert "msfa_copy: my copy" in listed and "soft_attention" not in listed
    monkeypatch.setenv("BENCHBOX_REGISTRY", str(tmp_path))
    assert registry_dir() == tmp_path and method_cards(entry_points=False).names() == ["msfa_copy"]
    monkeypatch.setenv("BENCHBOX_REGISTRY", str(tmp_path / "missing"))
    with pytest.raises(BenchboxError, match=r"method card folder .*missing does not exist; set BENCHBOX_REGISTRY"):
        method_cards()


# --- a newcomer's method: one module and one card in a folder of their own -----------------------

EXAMPLE = re.compile(r"<!-- file: (?P<name>\S+) -->\n```\w+\n(?P<text>.*?)```", re.S)


def readme_example() -> tuple[dict[str, str], tuple[int, int, int]]:
    """The ResNet18 example files of registry/README.md, and the line counts the README states."""
    readme = (registry_dir() / "README.md").read_text()
    files = {match["name"]: match["text"] for match in EXAMPLE.finditer(readme)}
    stated = re.search(r"A newcomer writes (\d+) lines: the module \((\d+)\) and the card \((\d+)\)", readme)
    assert stated, "registry/README.md states no line count for the example"
    return files, tuple(int(n) for n in stated.groups())


def test_a_newcomers_resnet18_variant_is_one_module_and_one_card(tmp_path, monkeypatch, cards_only):
    from benchbox.training.runtime import seed_everything

    files, (total, module_lines, card_lines) = readme_example()
    assert sorted(files) == ["resnet18.yaml", "resnet18_variant.py"]
    assert (files["resnet18_variant.py"].count("\n"), files["resnet18.yaml"].count("\n")) == (module_lines, card_lines)
    assert total == module_lines + card_lines
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setenv("BENCHBOX_REGISTRY", str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        cards = method_cards(entry_points=False)
        assert cards.names() == ["resnet18"]
        card = cards.get("resnet18")
        assert card.settings("smoke") == {"batch_size": 16, "epochs": 3, "lr": 0.001, "val_metric": "balanced_accuracy", "input_size": 48}
        assert card.settings("paper")["epochs"] == 30 and card.context("paper").pretrained is True
        method = card.create()
        assert (method.name, method.task, method.classes, method.explainers) == ("resnet18", "multiclass", CLASSES, ("gradcam",))
        train, test = colour_classes(28, seed=0), colour_classes(10, seed=1)
        method.fit(train, train, card.context("smoke", progress=False))
        initial = []
        for _ in range(2):  # the weights fit started from: the same seed, the same build
            seed_everything(0)
            fresh = card.create()
            fresh.build(card.settings("smoke"))
            initial.append(fresh.nets[0].state_dict())
        trained = method.nets[0].state_dict()
        assert all(np.array_equal(initial[0][key].numpy(), initial[1][key].numpy()) for key in trained)
        assert any(not np.allclose(trained[key].numpy(), initial[0][key].numpy()) for key in trained if key.endswith("weight"))
        probs = method.predict_proba(test.images)
        assert probs.shape == (10, 7) and np.allclose(probs.sum(axis=1), 1)
        maps = method.explain(test.images[:2], np.array([0, 3]), "gradcam")
        assert maps.shape == (2, 16, 16) and 0 <= maps.min() and maps.max() <= 1
    finally:
        sys.modules.pop("resnet18_variant", None)
