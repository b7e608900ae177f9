"""`benchbox ls [--params]`."""

from __future__ import annotations

import argparse

from benchbox.methods import commands
from benchbox.registry import method_cards


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
    assert rows["soft_attention"] == ["soft_attention", "multiclass", "48/48/224", "attention,", "gradcam", "no"]
    for name in cards:  # every card's sizes and mask need, as its card says
        card = cards.get(name)
        assert rows[name][2] == f"{card.input_size('smoke')}/{card.input_size('quick')}/{card.input_size('paper')}"
        assert rows[name][-1] == ("yes" if card.needs_masks else "no")
    assert "claims: accuracy=0.788, f1_weighted=0.79, params_m=11.5, latency.ms_p50=4.3" in out
    assert "claims: accuracy=0.926, auc_macro=0.985" in out
    assert "paper: Imran et al., Deep-Lesion Scan" in out


def test_ls_params_prints_counts_beside_claims(capsys, monkeypatch):
    args = _parse(["ls", "--params"])
    assert args.params
    args.func(args)
    out = capsys.readouterr().out
    msfa = next(line for line in out.splitlines() if line.startswith("msfa ") and "M" in line)
    assert msfa.split()[1:4] == ["11.97M", "11.5M", "at"]
    resnet = next(line for line in out.splitlines() if line.startswith("resnet50 ") and "M " in line)
    assert resnet.split()[1] == "24.03M"
