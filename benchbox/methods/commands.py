"""`benchbox ls [--params]`: what methods are registered, from their cards (no torch unless --params)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..methods.base import PROFILES
from ..package_data import REGISTRY_ENV
from ..registry import MethodCard, citation_text, method_cards


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ls",
        help="list the registered methods",
        description="List every registered method (the cards shipped with benchbox, or those of "
        f"--registry / ${REGISTRY_ENV}; plugins of the benchbox.methods entry-point group): task, input "
        "size per profile, explainers, whether it needs lesion masks, its paper and the paper's claimed numbers.",
    )
    parser.add_argument(
        "--registry",
        metavar="DIR",
        help=f"read the method cards of this folder instead of the shipped ones (like ${REGISTRY_ENV})",
    )
    parser.add_argument(
        "--params",
        action="store_true",
        help="also build each model at its paper-profile input size (random weights) and count its parameters",
    )
    parser.set_defaults(func=run_ls)


def _claims_text(card: MethodCard) -> str:
    parts = []
    for metric, claim in card.claims.items():
        value = claim.get("value") if isinstance(claim, dict) else claim
        parts.append(f"{metric}={value}")
    return ", ".join(parts) or "none recorded"


def method_rows(cards: list[MethodCard]) -> list[list[str]]:
    return [
        [
            card.name,
            card.task,
            "/".join(str(card.input_size(profile)) for profile in PROFILES),
            ", ".join(card.explainers) or "-",
            "yes" if card.needs_masks else "no",
        ]
        for card in cards
    ]


def parameter_counts(card: MethodCard) -> tuple[float | None, str]:
    """Millions of parameters of the method's deployed networks at its paper settings, and a note."""
    try:
        method = card.create()
        method.build(card.settings("paper"))
        networks = method.networks()
    except Exception as error:  # one unbuildable method must not hide the others' counts
        return None, f"cannot build: {type(error).__name__}: {error}"
    if not networks:
        return None, "the method builds no networks before training"
    unique = {id(p): p for network in networks for p in network.parameters()}
    return sum(p.numel() for p in unique.values()) / 1e6, f"at {card.input_size('paper')} px"


PARAMS_TOLERANCE = 0.05  # a difference beyond 5 % of the paper's figure needs the card's explanation


def parameter_row(card: MethodCard, millions: float | None, built: str) -> list[str]:
    """method | count | the paper's figure (claims.params_m) | relative difference | how built | the card's note."""
    claim = card.claims.get("params_m")
    claimed = claim.get("value") if isinstance(claim, dict) else claim
    note = str(claim.get("note", "")) if isinstance(claim, dict) else ""
    difference = "-"
    if claimed is not None and millions is not None:
        relative = (millions - float(claimed)) / float(claimed)
        difference = f"{relative:+.1%}"
        if abs(relative) > PARAMS_TOLERANCE and not note:
            note = "over 5 % and the card does not say why"
    return [card.name, "-" if millions is None else f"{millions:.2f}M",
            "not given" if claimed is None else f"{claimed}M", difference, built, note]


def run_ls(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    folder = getattr(args, "registry", None)
    registry = method_cards(None if folder is None else Path(folder))
    cards = [registry.get(name) for name in registry]
    headers = ["method", "task", f"input px ({'/'.join(PROFILES)})", "explainers", "needs masks"]
    print(tabulate(method_rows(cards), headers=headers))
    print()
    for card in cards:
        print(f"{card.name}: {card.summary}")
        print(f"  paper: {citation_text(card.paper)}")
        print(f"  claims: {_claims_text(card)}")
        if not card.default_run:
            print(f"  not part of `benchbox run --all` (its card: default_run: false); run it with --methods {card.name}")
        print(f"  card: {card.source}")
    if args.params:
        rows = [parameter_row(card, *parameter_counts(card)) for card in cards]
        print()
        print(tabulate(rows, headers=["method", "parameters", "paper's figure", "difference", "built", "why they differ (card)"]))
    return 0
