"""A variant card (`fit_of`) shares its base's trained model and changes only post-fit settings."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
import yaml

from benchbox.registry import get_card
from benchbox.runner.config import RunConfig
from benchbox.runner.job import adopt_base_outputs
from benchbox.runner.run import execute, job_specs, metric_suites_sha256, validate

from runner_tiny_methods import CardedBinary

CARD = {"import_path": "runner_tiny_methods:CardedBinary", "task": "binary", "explainers": ["saliency"],
        "paper": {"citation": {"authors": ["A. Author"], "title": "A tiny paper", "year": 2026}},
        "claims": {"binary.auc": {"value": 0.9, "paper_metric": "AUC", "where": "Table 1"}}}


def _card(folder, name, rule, epochs=30, **extra):
    profiles = {p: {"input_size": 32, "epochs": epochs, "threshold_rule": rule} for p in ("smoke", "quick", "paper")}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, **CARD, "profiles": profiles, **extra}))


@pytest.fixture
def variant_registry(tmp_path, monkeypatch):
    folder = tmp_path / "cards"
    folder.mkdir()
    _card(folder, "carded", "fixed")
    _card(folder, "carded_low", "low", fit_of="carded")
    _card(folder, "carded_bad", "low", epochs=5, fit_of="carded")  # trains otherwise: refused
    monkeypatch.setenv("BENCHBOX_REGISTRY", str(folder))
    return folder


pytestmark = pytest.mark.usefixtures("without_run_report")


def test_a_variant_reuses_its_bases_fit_and_differs_only_in_the_threshold(variant_registry, tiny_synthderm, tmp_path):
    config = RunConfig(methods=["carded_low", "carded", "carded_bad"], data=f"synthderm:{tiny_synthderm}", profile="smoke",
                       out=str(tmp_path / "run"), explain_n=4, device="cpu")
    before = CardedBinary.fits
    assert execute(config, progress=False) == 1  # carded_bad fails alone
    run = config.run_dir()
    assert CardedBinary.fits - before == 1  # the variant ran first, trained the base's fit, and the base reused it
    low, base = (pd.read_json(run / name / "seed0" / "metrics.json", typ="series") for name in ("carded_low", "carded"))
    assert (low["threshold"], base["threshold"]) == pytest.approx((0.3, 0.5))
    assert low["metrics"]["binary.auc"] == base["metrics"]["binary.auc"]  # one model, one ranking
    assert low["metrics"]["binary.sensitivity"]["value"] >= base["metrics"]["binary.sensitivity"]["value"]
    pd.testing.assert_frame_equal(pd.read_csv(run / "carded_low" / "seed0" / "predictions.csv"),
                                  pd.read_csv(run / "carded" / "seed0" / "predictions.csv"))
    error = (run / "carded_bad" / "seed0" / "error.txt").read_text()
    assert "carded_bad" in error and "changes ['epochs']" in error and "only ['threshold_rule']" in error
    kept = yaml.safe_load((run / "cards" / "carded_low.yaml").read_text())  # the run keeps the cards it ran with
    assert kept["fit_of"] == "carded" and kept["profiles"]["smoke"]["threshold_rule"] == "low"
    assert kept["source"] == "carded_low.yaml"  # the file, not this machine's path to it


def test_claims_read_the_runs_card_copy_not_the_edited_card(variant_registry, tiny_synthderm, tmp_path):
    from benchbox.reports.claims import claims_section, run_cards
    from benchbox.reports.runfolder import read_run

    config = RunConfig(methods=["carded"], data=f"synthderm:{tiny_synthderm}", profile="smoke",
                       out=str(tmp_path / "run"), explain_n=4, device="cpu")
    assert execute(config, progress=False) == 0
    _card(variant_registry, "carded", "fixed", claims={"binary.auc": 0.1})  # edited after the run
    run = read_run(config.run_dir())
    section = claims_section(run, *run_cards(run.folder, variant_registry))
    assert "A. Author (2026). A tiny paper." in section and "| binary.auc | 0.900" in section and "AUC, Table 1" in section
    assert "the copy of each card this run kept" in section
    (run.folder / "cards" / "carded.yaml").unlink()
    (run.folder / "cards").rmdir()  # a run folder from before copies were kept: the current card, said so
    section = claims_section(run, *run_cards(run.folder, variant_registry))
    assert "| binary.auc | 0.100" in section and "kept no card copies" in section


def test_a_variant_after_its_base_copies_the_bases_predictions_latency_and_explanations(
        variant_registry, tiny_synthderm, tmp_path, monkeypatch):
    """The base finished first in the same run folder: the variant's predict, latency and explain
    stages copy its files (the same networks; only the threshold differs) instead of computing them,
    while its metrics use its own threshold. A base job of another spec is not copied from."""
    calls = []
    original = CardedBinary.predict_proba
    monkeypatch.setattr(CardedBinary, "predict_proba", lambda self, images: calls.append(self.name) or original(self, images))
    config = RunConfig(methods=["carded", "carded_low"], data=f"synthderm:{tiny_synthderm}", profile="smoke",
                       out=str(tmp_path / "run"), explain_n=4, device="cpu")
    assert execute(config, progress=False) == 0
    run = config.run_dir()
    assert "carded" in calls and "carded_low" not in calls  # nothing the variant computes needs a forward pass
    for name in ("predictions.csv", "efficiency.json", "xai.json", "explanations.npz"):
        assert (run / "carded_low" / "seed0" / name).read_bytes() == (run / "carded" / "seed0" / name).read_bytes(), name
    low, base = (pd.read_json(run / name / "seed0" / "metrics.json", typ="series") for name in ("carded_low", "carded"))
    assert (low["threshold"], base["threshold"]) == pytest.approx((0.3, 0.5))

    checked = validate(config, progress=False)
    specs = job_specs(config, checked, config.evaluation(), metric_suites_sha256())
    variant_spec = next(spec for spec in specs if spec.method == "carded_low")
    fresh = tmp_path / "fresh" / "carded_low" / "seed0"
    fresh.mkdir(parents=True)
    (tmp_path / "fresh" / "carded").symlink_to(run / "carded")
    shared = ["predictions.csv", "efficiency.json", "xai.json", "explanations.npz"]
    assert adopt_base_outputs(variant_spec, get_card("carded_low"), fresh) == shared
    other = tmp_path / "other" / "carded_low" / "seed0"
    other.mkdir(parents=True)
    (tmp_path / "other" / "carded").symlink_to(run / "carded")
    assert adopt_base_outputs(replace(variant_spec, seed=1), get_card("carded_low"), other) == []  # no finished seed1 job
