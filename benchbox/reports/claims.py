""""Claimed vs measured": each method card's paper claims beside what this run measured, with
the two protocols stated, because a paper's number is a claim under its own protocol. The cards
are the copies the run kept (`<run>/cards/`), so a later edit of a card never rewrites an old
run's table; a run folder from before those copies reads the current registry and says so."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from ..errors import BenchboxError
from .boards import describe_mapping, format_metric, format_number, markdown_table
from .runfolder import Run
from ..package_data import cards_dir
from ..registry import citation_text
from ..runner.store import CARDS_FOLDER

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


def run_cards(run_folder: Path, registry_dir: Path = REGISTRY_DIR) -> tuple[dict[str, dict[str, Any]], str]:
    """(cards, where they came from): the run's own copies, else the registry's current cards."""
    copies = Path(run_folder) / CARDS_FOLDER
    if copies.is_dir():
        return load_cards(copies), f"the copy of each card this run kept (`{CARDS_FOLDER}/<method>.yaml`)"
    return load_cards(registry_dir), ("this run folder kept no card copies (made before benchbox kept them), so these "
                                      "are the cards benchbox reads now (`registry/`, or $BENCHBOX_REGISTRY)")


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
    protocol = paper.get("protocol") if isinstance(paper, dict) else None
    return citation_text(paper), describe_mapping(protocol) if protocol else "not stated on the card"


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


def _reported_table(paper: dict[str, Any]) -> str:
    rows = [[str(item.get("name", "—")), str(item.get("value", "—")), str(item.get("where", "")), str(item.get("note", ""))]
            for item in paper.get("reported") or [] if isinstance(item, dict)]
    return markdown_table(rows, ["the paper's number", "value", "where", "note"]) if rows else ""


def _contradictions(paper: dict[str, Any]) -> str:
    lines = []
    for item in paper.get("contradictions") or []:
        if isinstance(item, dict):
            readings = "; ".join(f"«{reading}»" for reading in item.get("readings") or [])
            lines.append(f"- **{item.get('aspect', '—')}**: {readings}. benchbox: {item.get('benchbox', '—')}")
    return "\n".join(lines)


def claims_section(run: Run, cards: dict[str, dict[str, Any]], cards_from: str = "") -> str:
    """One block per method of the run whose card cites a paper or lists claims; empty when none does."""
    blocks = []
    for method in run.methods:
        card = cards.get(method) or {}
        claims = card.get("claims") or {}
        paper = card.get("paper") if isinstance(card.get("paper"), dict) else {}
        if not (isinstance(claims, dict) and claims) and not paper:
            continue
        measured = run.method_metrics(method)
        rows = []
        for name, claim in (claims if isinstance(claims, dict) else {}).items():
            claimed, note = _claimed_value(claim)
            metric = measured.get(str(name))
            delta = "—"
            if claimed is not None and metric is not None and math.isfinite(metric.value):
                delta = format_number(metric.value - claimed)
            source = ""
            if isinstance(claim, dict) and (claim.get("paper_metric") or claim.get("where")):
                source = ", ".join(str(claim[key]) for key in ("paper_metric", "where") if claim.get(key))
            rows.append([name, "—" if claimed is None else format_number(claimed),
                         format_metric(metric) if metric else "not measured under this name",
                         delta, source, note])
        reference, protocol = paper_protocol(card)
        parts = [f"### {method}\n\n- paper: {reference}\n- paper's protocol: {protocol}\n"
                 f"- this run: {run_protocol(run, card)}"]
        if rows:
            parts.append(markdown_table(rows, ["claim", "claimed", "measured", "measured - claimed", "the paper's metric, where", "note"]))
        reported = _reported_table(paper)
        if reported:
            parts.append("Also reported by the paper (no benchbox metric of the same definition, or another protocol):\n\n" + reported)
        contradictions = _contradictions(paper)
        if contradictions:
            parts.append("Where the paper contradicts itself:\n\n" + contradictions)
        blocks.append("\n\n".join(parts))
    if blocks and cards_from:
        blocks.insert(0, f"Cards: {cards_from}.")
    return "\n\n".join(blocks)
