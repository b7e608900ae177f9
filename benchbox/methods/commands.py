"""`benchbox ls [--params]`: what methods are registered, from their cards (no torch unless --params)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..methods.base import PROFILES
from ..package_data import REGISTRY_ENV
from ..registry import MethodCard, method_cards


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
        print(f"  paper: {card.paper.get('reference', 'not recorded')}")
        print(f"  claims: {_claims_text(card)}")
        print(f"  card: {card.source}")
    if args.params:
        rows = []
        for card in cards:
            millions, note = parameter_counts(card)
            claim = card.claims.get("params_m")
            claimed = claim.get("value") if isinstance(claim, dict) else claim
            rows.append([card.name, "-" if millions is None else f"{millions:.2f}M", "-" if claimed is None else f"{claimed}M", note])
        print()
        print(tabulate(rows, headers=["method", "parameters", "paper claims", "note"]))
    return 0
