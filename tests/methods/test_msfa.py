"""msfa: the multi-scale block's wiring, a smoke fit's outputs, checkpoints, pretrained loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import benchbox.methods.msfa as msfa_module
from benchbox.errors import BenchboxError
from benchbox.methods.commands import parameter_counts
from benchbox.methods.msfa import MultiScaleAggregation, same_average_pool
from benchbox.registry import get_card


@pytest.fixture(scope="module")
def fitted(tiny_sets):
    train, val, _ = tiny_sets
    card = get_card("msfa")
    method = card.create()
    method.fit(train, val, card.context("smoke", progress=False))
    return method


def window_means(features: np.ndarray, kernel: int) -> np.ndarray:
    """Independent stride-1 'same' average pool: each cell averages the real cells of its k x k window."""
    before, after = (kernel - 1) // 2, kernel // 2
    height, width = features.shape
    out = np.empty_like(features)
    for i in range(height):
        for j in range(width):
            out[i, j] = features[max(0, i - before) : i + after + 1, max(0, j - before) : j + after + 1].mean()
    return out


def test_pooling_windows_are_the_papers_kernels_4_8_16_in_every_profile():
    card = get_card("msfa")
    for profile in ("smoke", "quick", "paper"):
        network = card.create().build_network(card.settings(profile))
        assert network.msfa.kernels == (4, 8, 16)  # Fig. 2: AvgPool k in {4, 8, 16}
    features = torch.arange(49, dtype=torch.float64).view(1, 1, 7, 7)  # layer4 at 224 px
    for kernel in (4, 8, 16):
        torch.testing.assert_close(same_average_pool(features, kernel)[0, 0].numpy(), window_means(features[0, 0].numpy(), kernel))
    assert same_average_pool(features, 4)[0, 0, 0, 0].item() == pytest.approx(np.mean([0, 1, 2, 7, 8, 9, 14, 15, 16]))
    assert torch.all(same_average_pool(features, 16) == 24.0)  # k = 16 on 7 x 7: the global mean everywhere
    k8 = same_average_pool(features, 8)[0, 0]
    assert k8[3, 3].item() == 24.0 and k8[0, 0].item() != 24.0  # k = 8: whole map at the centre, less at the border
    small = torch.rand(1, 3, 2, 2, dtype=torch.float64)  # the smoke/quick layer4: every window covers it
    for kernel in (4, 8, 16):
        torch.testing.assert_close(same_average_pool(small, kernel), small.mean(dim=(2, 3), keepdim=True).expand_as(small))


def test_block_is_one_linear_1x1_map_of_the_concatenated_pools():
    block = MultiScaleAggregation(channels=2, kernels=(4, 8, 16), bottleneck=3).double().eval()
    with torch.no_grad():
        block.fuse[0].weight.normal_()
        block.fuse[1].weight.normal_()
    features = torch.rand(1, 2, 7, 7, dtype=torch.float64)
    pooled = torch.cat([same_average_pool(features, k) for k in (4, 8, 16)], dim=1)  # 6 channels
    weight = (block.fuse[1].weight[:, :, 0, 0] @ block.fuse[0].weight[:, :, 0, 0])  # W of Eq. (1): 2 x 6
    bn = block.fuse[2]
    linear = torch.einsum("oc,nchw->nohw", weight, pooled)
    expected = torch.relu((linear - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var + bn.eps)[None, :, None, None])
    torch.testing.assert_close(block(features), expected)
    with pytest.raises(ValueError, match="pool_kernels"):
        MultiScaleAggregation(channels=2, kernels=(4, 0))


def test_parameter_counts_at_paper_size_match_the_papers_figures():
    trunk = sum(p.numel() for name, p in torchvision.models.resnet18(weights=None).named_parameters() if not name.startswith("fc."))
    card = get_card("msfa")
    block = card.create().build_network(card.settings("paper")).msfa
    added = sum(p.numel() for p in block.parameters())
    assert added == 1536 * 128 + 128 * 512 + 2 * 512 < 300_000  # Fig. 2: "Total added parameters: < 0.3 M"
    millions, note = parameter_counts(card)
    assert millions == pytest.approx((trunk + added + 512 * 7 + 7) / 1e6) and note == "at 224 px"
    claimed = card.claims["params_m"]["value"]
    assert claimed == 11.5 and abs(millions - claimed) / claimed < 0.05  # Abstract, Table IV: ~11.5 M


@pytest.mark.slow
def test_smoke_fit_gives_probabilities_and_class_specific_maps(fitted, tiny_sets):
    _, _, test = tiny_sets
    probs = fitted.predict_proba(test.images)
    assert probs.shape == (10, 7) and (probs >= 0).all() and np.abs(probs.sum(axis=1) - 1).max() < 1e-9
    maps = fitted.explain(test.images, np.zeros(10, int), "gradcam")
    other = fitted.explain(test.images, np.full(10, 3), "gradcam")
    assert maps.shape == (10, 48, 48) and maps.dtype == np.float32 and maps.min() >= 0 and maps.max() <= 1
    assert np.abs(maps - other).max() > 0.1


@pytest.mark.slow
def test_save_load_round_trip_gives_identical_predictions(fitted, tiny_sets, tmp_path):
    _, _, test = tiny_sets
    fitted.save(tmp_path)
    again = get_card("msfa").create()
    again.load(tmp_path)
    np.testing.assert_array_equal(again.predict_proba(test.images), fitted.predict_proba(test.images))
    np.testing.assert_array_equal(again.explain(test.images[:2], np.array([1, 2]), "gradcam"),
                                  fitted.explain(test.images[:2], np.array([1, 2]), "gradcam"))  # fmt: skip


@pytest.mark.slow
def test_the_same_seed_gives_the_same_model(fitted, tiny_sets):
    train, val, test = tiny_sets
    card = get_card("msfa")
    method = card.create()
    method.fit(train, val, card.context("smoke", progress=False))
    np.testing.assert_array_equal(method.predict_proba(test.images), fitted.predict_proba(test.images))


def test_paper_profile_loads_local_weights_before_training(tmp_path, tiny_sets, monkeypatch):
    torch.manual_seed(5)
    saved = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(saved, tmp_path / "resnet18.pth")
    seen = {}
    monkeypatch.setattr(msfa_module, "train_stage", lambda network, *a, **k: seen.update(network.backbone.state_dict()))
    card = get_card("msfa")
    context = card.context("smoke", pretrained=True, weights_dir=tmp_path, progress=False)
    train, val, _ = tiny_sets
    card.create().fit(train, val, context)
    assert all(torch.equal(seen[k], saved[k]) for k in saved if not k.startswith("fc."))


def test_missing_weights_fail_before_any_training(tmp_path, tiny_sets, monkeypatch):
    def must_not_train(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(msfa_module, "train_stage", must_not_train)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        card = get_card("msfa")
        method = card.create()
        context = card.context("paper", weights_dir=tmp_path, progress=False)
        with pytest.raises(BenchboxError, match="--no-pretrained"):
            method.validate(context)
        train, val, _ = tiny_sets
        with pytest.raises(BenchboxError, match="--weights-dir"):
            method.fit(train, val, context)
    finally:
        torch.hub.set_dir(previous)


def test_explain_refuses_unknown_explainers_and_targets(fitted, tiny_sets):
    _, _, test = tiny_sets
    with pytest.raises(BenchboxError, match="has no explainer 'attention'"):
        fitted.explain(test.images[:2], np.array([0, 1]), "attention")
    with pytest.raises(ValueError, match="one target in"):
        fitted.explain(test.images[:2], np.array([0, 7]), "gradcam")
    with pytest.raises(BenchboxError, match="call fit or load first"):
        get_card("msfa").create().predict_proba(test.images)
