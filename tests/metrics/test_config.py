"""metrics/suites.yaml: boards, directions, settings, and the messages for a broken file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchbox.errors import BenchboxError
from benchbox.labels import CLASSES
from benchbox.metrics import higher_is_better, load_config, metric_names
from benchbox.metrics.config import DEFAULT_SUITES


def test_default_suites():
    config = load_config()
    assert config.bootstrap.n_resamples == 1000 and config.bootstrap.method == "bca"
    assert config.bootstrap.alpha == 0.05
    assert config.min_subgroup_size == 30
    assert set(config.subgroup_attributes) == {
        "ita_category", "ita_light_dark", "sex", "age_band", "localization", "source"
    }
    assert config.boards["multiclass"].primary == "mcc"
    assert config.boards["binary"].primary == "binary.auc"
    assert config.boards["binary"].tasks == ("multiclass", "binary")


def test_every_board_metric_is_computed_for_every_task_on_the_board():
    config = load_config()
    for board in config.boards.values():
        for task in board.tasks:
            names = set(metric_names(task))
            assert set(board.metrics) <= names, (board.name, task)
            assert set(board.subgroup_metrics) <= names, (board.name, task)
            assert {f"{family}.{c}" for family in board.per_class for c in CLASSES} <= names
    assert set(config.subgroup_metrics("binary")) == {"binary.auc", "binary.sensitivity", "binary.specificity"}


def test_every_computed_metric_has_a_direction():
    for task in ("multiclass", "binary"):
        for name in metric_names(task):
            higher_is_better(name)  # raises when missing


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mcc", True),
        ("ece", False),
        ("f1.mel", True),
        ("support.nv", None),
        ("binary.sens_at_spec90", True),
        ("subgroup.ita_light_dark.binary.auc.dark", True),
        ("subgroup.sex.binary.brier.female", False),
        ("subgroup.ita_light_dark.binary.auc.gap", False),
        ("subgroup.ita_light_dark.binary.auc.gap.dark", None),
        ("latency.ms_p50", False),
        ("xai.gradcam.iou_at_mask_area", True),
        ("xai.gradcam.deletion_auc", False),
        ("xai.attention.energy_pointing_game", True),
    ],
)
def test_directions(name, expected):
    assert higher_is_better(name) is expected


def test_unknown_metric_has_no_direction():
    with pytest.raises(BenchboxError, match="no direction for metric 'wow'"):
        higher_is_better("wow")


def broken(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(DEFAULT_SUITES.read_text())
    edit(data)
    path = tmp_path / "suites.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["bootstrap"].pop("seed"), "missing key 'bootstrap.seed'"),
        (lambda d: d["bootstrap"].update(method="student"), "bootstrap.method must be one of"),
        (lambda d: d["bootstrap"].update(alpha=1.5), "bootstrap.alpha must lie strictly between"),
        (lambda d: d["bootstrap"].update(n_resamples="many"), "bootstrap.n_resamples must be of type int"),
        (lambda d: d["subgroups"].update(age_band_edges=[60, 30]), "age_band_edges must be increasing"),
        (lambda d: d["boards"]["binary"].update(primary="mcc"), "boards.binary.primary 'mcc' must be one of"),
        (lambda d: d["boards"]["binary"].update(tasks=["ternary"]), "boards.binary.tasks must name tasks"),
        (lambda d: d["directions"].pop("binary.auc"), "no direction for metric 'binary.auc'"),
        (lambda d: d["directions"].update(mcc="up"), "directions.mcc must be true, false or null"),
    ],
)
def test_broken_files_name_the_key(tmp_path, edit, message):
    path = broken(tmp_path, edit)
    with pytest.raises(BenchboxError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value)
