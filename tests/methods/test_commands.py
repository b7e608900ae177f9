"""`benchbox ls [--params]`."""

from __future__ import annotations

import argparse

import pytest

from benchbox.methods import commands
from benchbox.registry import get_card, method_cards


def _parse(argv):
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_ls_lists_every_method_with_sizes_explainers_paper_and_claims(capsys):
    args = _parse(["ls"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    cards = method_cards()
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2 : 2 + len(cards)]}
    assert set(rows) == set(cards.names())
    assert rows["msfa"] == ["msfa", "multiclass", "48/64/224", "gradcam", "no"]
    assert rows["soft_attention"] == ["soft_attention", "multiclass", "48/64/224", "attention,", "gradcam", "no"]
    for name in cards:  # every card's sizes and mask need, as its card says
        card = cards.get(name)
        assert rows[name][2] == f"{card.input_size('smoke')}/{card.input_size('quick')}/{card.input_size('paper')}"
        assert rows[name][-1] == ("yes" if card.needs_masks else "no")
    assert "claims: accuracy=0.788, f1_weighted=0.79, params_m=11.5, latency.ms_p50=4.3" in out
    assert "claims: accuracy=0.932, f1_weighted=0.93, f1_macro=0.77, auc_macro=0.979, auc_weighted=0.977," in out
    assert "paper: D. Imran, N. Alhusaini, S. Alwahas. Deep-Lesion Scan: A Soft Attention-Enhanced ResNet Model" in out
    assert "run it with --methods dual_task_unet_r34" in out and "run it with --methods efficientnet_b0_128" in out


def test_ls_params_prints_counts_beside_claims(capsys, monkeypatch):
    args = _parse(["ls", "--params"])
    assert args.params
    args.func(args)
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if "px" in line and line.split()[1].endswith("M")}
    assert "colour_knn                    -             not given         -             the method builds no networks" in out
    for name in set(method_cards().names()) - {"colour_knn"}:  # the count beside the paper's figure, and their difference
        card, row = get_card(name), rows[name]
        claim = card.claims.get("params_m")
        claimed = claim.get("value") if isinstance(claim, dict) else claim
        if claimed is None:
            assert row[2:4] == ["not", "given"]
            continue
        count = float(row[1].removesuffix("M"))
        assert row[2] == f"{claimed}M" and float(row[3].removesuffix("%")) == pytest.approx(100 * (count - claimed) / claimed, abs=0.06)
        assert abs(count - claimed) / claimed <= 0.05 or len(row) > 7  # a larger difference comes with the card's reason
    resnet = next(line for line in out.splitlines() if line.startswith("resnet50 ") and "M " in line)
    assert resnet.split()[1] == "24.03M"
