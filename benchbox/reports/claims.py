""""Claimed vs measured": each method card's paper claims beside what this run measured, with
the two protocols stated, because a paper's number is a claim under its own protocol."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from ..errors import BenchboxError
from .boards import describe_mapping, format_metric, format_number, markdown_table
from .runfolder import Run
from ..package_data import cards_dir

REGISTRY_DIR = cards_dir()  # $BENCHBOX_REGISTRY, else the cards shipped with benchbox


def load_cards(registry_dir: Path = REGISTRY_DIR) -> dict[str, dict[str, Any]]:
    """Every `<name>.yaml` card of the registry folder, keyed by its `name` (else file stem)."""
    cards = {}
    for path in sorted(Path(registry_dir).glob("*.yaml")):
        try:
            card = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise BenchboxError(f"{path} is not valid YAML ({error}); fix the card.") from None
        if isinstance(card, dict):
            cards[str(card.get("name", path.stem))] = card
    return cards


def _claimed_value(claim: Any) -> tuple[float | None, str]:
    """A claim is a number, or a mapping with `value` and an optional `note`."""
    if isinstance(claim, dict):
        value, note = claim.get("value"), str(claim.get("note", ""))
    else:
        value, note = claim, ""
    try:
        return float(value), note
    except (TypeError, ValueError):
        return None, note or str(value)


def paper_protocol(card: dict[str, Any]) -> tuple[str, str]:
    """(reference, protocol) from the card's `paper`: a string, or a mapping with `reference`
    (or `title`) and `protocol` (text or a mapping such as dataset / split / input size)."""
    paper = card.get("paper")
    if isinstance(paper, dict):
        reference = str(paper.get("reference") or paper.get("title") or "—")
        protocol = paper.get("protocol")
        return reference, describe_mapping(protocol) if protocol else "not stated on the card"
    return str(paper or "—"), "not stated on the card"


def run_protocol(run: Run, card: dict[str, Any]) -> str:
    """This run's dataset, split, profile and the method's input size under that profile."""
    dataset, split = run.info.get("dataset", {}), run.info.get("split", {})
    profile = run.info.get("config", {}).get("profile", "—")
    text = (f"dataset: {dataset.get('name', '—')} ({dataset.get('n_images', '?')} images), "
            f"split: {Path(str(split.get('path', '—'))).name}, sha256 {str(split.get('hash', '—'))[:12]}, "
            f"profile: {profile}, test split only")
    settings = (card.get("profiles") or {}).get(profile)
    if isinstance(settings, dict) and settings.get("input_size") is not None:
        text += f", input size: {settings['input_size']} px"
    return text


def claims_section(run: Run, cards: dict[str, dict[str, Any]]) -> str:
    """One block per method of the run whose card lists claims; empty when none does."""
    blocks = []
    for method in run.methods:
        card = cards.get(method) or {}
        claims = card.get("claims") or {}
        if not isinstance(claims, dict) or not claims:
            continue
        measured = run.method_metrics(method)
        rows = []
        for name, claim in claims.items():
            claimed, note = _claimed_value(claim)
            metric = measured.get(str(name))
            delta = "—"
            if claimed is not None and metric is not None and math.isfinite(metric.value):
                delta = format_number(metric.value - claimed)
            rows.append([name, "—" if claimed is None else format_number(claimed),
                         format_metric(metric) if metric else "not measured under this name",
                         delta, note])
        reference, protocol = paper_protocol(card)
        blocks.append(
            f"### {method}\n\n"
            f"- paper: {reference}\n"
            f"- paper's protocol: {protocol}\n"
            f"- this run: {run_protocol(run, card)}\n\n"
            + markdown_table(rows, ["claim", "claimed", "measured", "measured - claimed", "note"])
        )
    return "\n\n".join(blocks)
