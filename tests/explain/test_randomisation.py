"""Model-parameter randomisation on tiny CNNs: planted failures, order, isolation, hand-checked values,
and the quantus behaviours the module avoids (each pinned, so an upgrade that changes one is noticed)."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from benchbox.data.arrays import ImageSet
from benchbox.explain.baseline import centred_gaussian_map
from benchbox.explain.cam import cam_maps
from benchbox.explain.maps import normalise_maps
from benchbox.explain.randomisation import (
    MPRT_THRESHOLD,
    layer_blocks,
    map_similarity,
    model_randomisation_check,
    passes_randomisation_check,
    randomisation_stages,
    reinitialise_,
    spearman_rows,
    ssim_maps,
)

skimage_ssim = pytest.importorskip("skimage.metrics").structural_similarity


def tiny_cnn(seed: int = 0) -> nn.Sequential:
    """conv -> conv -> pooled linear head: blocks '0', '2', '6'."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))


def gradient_maps(model: nn.Module, inputs: torch.Tensor, targets: np.ndarray) -> np.ndarray:
    """|d logit_target / d input|, max over channels, per-map normalised: the plain gradient explainer."""
    x = inputs.clone().requires_grad_(True)
    model(x)[torch.arange(len(x)), torch.as_tensor(targets)].sum().backward()
    return normalise_maps(x.grad.abs().amax(dim=1).numpy())


INPUTS = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
TARGETS = np.array([0, 1, 2, 0, 1, 2])


def states(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_a_map_that_ignores_the_model_fails_at_every_stage():
    gauss = np.broadcast_to(centred_gaussian_map(16, 16), (6, 16, 16)).copy()
    result = model_randomisation_check(tiny_cnn(), lambda model: gauss)
    np.testing.assert_array_equal(result["spearman_curve"], np.ones((6, 3)))
    np.testing.assert_allclose(result["ssim_curve"], np.ones((6, 3)), atol=1e-12)
    assert not passes_randomisation_check(result["spearman"])


@pytest.mark.parametrize("explainer", ["gradient", "gradcam"])
def test_gradient_and_gradcam_maps_lose_their_rank_order(explainer):
    explain = {"gradient": lambda m: gradient_maps(m, INPUTS, TARGETS),
               "gradcam": lambda m: cam_maps(m, [m[3]], INPUTS, TARGETS)}[explainer]
    result = model_randomisation_check(tiny_cnn(), explain)
    assert result["spearman"].mean() < 0.3 < MPRT_THRESHOLD  # measured: 0.13 (gradient), 0.09 (Grad-CAM)
    assert result["ssim"].mean() < 0.3
    assert passes_randomisation_check(result["spearman"])


def test_the_callers_network_and_random_state_are_untouched():
    net = tiny_cnn()
    before = states(net)
    torch.manual_seed(7)
    expected_draw = torch.rand(3)
    torch.manual_seed(7)
    model_randomisation_check(net, lambda m: gradient_maps(m, INPUTS, TARGETS))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert torch.equal(torch.rand(3), expected_draw)  # the global generator was neither reseeded nor consumed


def test_stages_run_top_down_and_accumulate():
    trained = tiny_cnn()
    original = states(trained)
    seen = []  # which blocks differ from the trained weights at each explanation pass

    def explain(model):
        now = model.state_dict()
        seen.append(sorted({k.split(".")[0] for k in original if not torch.equal(now[k], original[k])}))
        return gradient_maps(model, INPUTS, TARGETS)

    result = model_randomisation_check(trained, explain)
    assert result["stages"] == ["6", "2", "0"]
    assert seen == [[], ["6"], ["2", "6"], ["0", "2", "6"]]  # trained maps first, then one more block per stage
    assert [name for name, _ in randomisation_stages(tiny_cnn(), n_stages=2)] == ["6", "2+0"]
    assert [name for name, _ in randomisation_stages(tiny_cnn(), n_stages=1)] == ["6+2+0"]


def test_values_agree_with_scipy_spearman_and_skimage_ssim():
    maps = []

    def explain(model):
        maps.append(gradient_maps(model, INPUTS, TARGETS))
        return maps[-1]

    result = model_randomisation_check(tiny_cnn(), explain)
    trained, stages = maps[0], maps[1:]
    for s, randomised in enumerate(stages):
        for i, (a, b) in enumerate(zip(trained.astype(np.float64), randomised.astype(np.float64))):
            assert result["spearman_curve"][i, s] == pytest.approx(spearmanr(a.ravel(), b.ravel())[0], abs=1e-12)
            assert result["ssim_curve"][i, s] == pytest.approx(skimage_ssim(a, b, data_range=1.0), abs=1e-10)
    np.testing.assert_array_equal(result["spearman"], result["spearman_curve"][:, -1])
    np.testing.assert_array_equal(result["ssim"], result["ssim_curve"][:, -1])


@pytest.mark.parametrize("size", [5, 8, 23])
def test_batched_ssim_is_skimage_ssim_also_on_small_maps(size):
    rng = np.random.default_rng(size)
    a, b = rng.random((3, size, size)), rng.random((3, size, size))
    b[2] = a[2] * 0.5 + 0.1  # correlated pair
    win = min(7, size if size % 2 else size - 1)
    expected = [skimage_ssim(a[i], b[i], data_range=1.0, win_size=win) for i in range(3)]
    np.testing.assert_allclose(ssim_maps(a, b), expected, atol=1e-12)
    with pytest.raises(ValueError, match="at least 3 x 3"):
        ssim_maps(a[:, :2, :2], b[:, :2, :2])


def test_flat_maps_count_as_identical_or_unrelated():
    structured = np.random.default_rng(0).random((1, 8, 8))
    flat = np.zeros((1, 8, 8))
    np.testing.assert_array_equal(spearman_rows(np.concatenate([flat, structured, flat]),
                                                np.concatenate([flat, flat, structured])), [1.0, 0.0, 0.0])
    # rank correlation ignores per-map scaling, SSIM sees it only through the normalisation
    np.testing.assert_allclose(map_similarity(structured, 3 * structured + 1)["spearman"], [1.0])
    tied = np.round(structured * 3) / 3  # plateaus, as sharpened and CAM maps have: average ranks
    assert spearman_rows(tied, structured)[0] == pytest.approx(spearmanr(tied.ravel(), structured.ravel())[0], abs=1e-12)


def test_an_ensemble_loses_the_same_blocks_in_every_member_at_once():
    members = nn.ModuleList([tiny_cnn(0), tiny_cnn(1)])
    original = [states(m) for m in members]
    changed = []

    def explain(model):
        changed.append([sorted({k.split(".")[0] for k in o if not torch.equal(m.state_dict()[k], o[k])})
                        for m, o in zip(model, original)])
        return np.mean([gradient_maps(m, INPUTS, TARGETS) for m in model], axis=0)

    result = model_randomisation_check(members, explain, networks=list)
    assert result["stages"] == ["6", "2", "0"]
    assert changed[2] == [["2", "6"], ["2", "6"]]


def test_trunks_are_split_and_weights_without_reset_parameters_are_redrawn():
    class Scale(nn.Module):  # a learned gain, no reset_parameters
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.full((8,), 2.0))

        def forward(self, x):
            return x * self.gain.view(1, -1, 1, 1)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = tiny_cnn()[:4]
            self.scale = Scale()
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

    net = Wrapped()
    assert [name for name, _ in layer_blocks(net)] == ["backbone.0", "backbone.2", "scale", "head"]
    twins = [copy.deepcopy(net) for _ in range(3)]
    for twin, seed in zip(twins, (0, 0, 1)):
        reinitialise_([twin.scale, twin.backbone], seed=seed)
    assert not torch.equal(twins[0].scale.gain, net.scale.gain)
    assert twins[0].scale.gain.pow(2).mean().sqrt().item() == pytest.approx(2.0, rel=0.8)  # the trained scale, not its values
    assert torch.equal(twins[0].head[2].weight, net.head[2].weight)  # not asked for: untouched
    same, other = states(twins[1]), states(twins[2])
    assert all(torch.equal(same[k], v) for k, v in twins[0].state_dict().items())  # seeded: the same draw again
    assert not torch.equal(other["backbone.0.weight"], same["backbone.0.weight"])


def tiny_explained_job(with_masks: bool, faithfulness: str = "off", n: int = 4):
    """explain_and_score's three inputs for a stub job: a tiny Grad-CAM method and n test images
    of 16 px, with or without lesion masks (as ISIC 2018 Task 3 has none)."""
    from benchbox.methods.torch_method import TorchMethod

    class Tiny(TorchMethod):
        name, task, explainers = "tiny_mprt", "binary", ("gradcam",)

        def build_network(self, settings):
            return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

        def cam_target_layers(self, network):
            return [network[1]]

        def fit(self, train, val, ctx):
            raise NotImplementedError

    torch.manual_seed(0)
    method = Tiny()
    method.build({"input_size": 16})
    ids = np.array([f"IMG_{i}" for i in range(n)])
    images = np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    masks = np.zeros((n, 16, 16), bool)
    masks[:, 4:12, 4:12] = True
    manifest = pd.DataFrame({"image_id": ids, "lesion_id": [f"L{i // 2}" for i in range(n)],
                             "mask_path": "m.png" if with_masks else ""})
    dataset = SimpleNamespace(manifest=manifest, image_set=lambda chosen, size, progress: ImageSet(
        image_ids=ids, images=images, labels=np.zeros(n, int), groups=ids, masks=masks if with_masks else None))
    inputs = SimpleNamespace(dataset=dataset, split=pd.DataFrame({"image_id": ids, "split": "test"}))
    spec = SimpleNamespace(options={"explain_n": n, "faithfulness": faithfulness, "deletion_steps": 4}, seed=0, input_size=16)
    return spec, method, inputs


def test_the_runner_scores_every_explainer_but_not_the_baseline():
    """explain_and_score on a stub job: mprt arrays per explainer, none for the Gaussian."""
    from benchbox.runner.job import explain_and_score

    spec, method, inputs = tiny_explained_job(with_masks=True)
    n = spec.options["explain_n"]
    before = states(method.nets[0])
    scores, arrays = explain_and_score(spec, method, inputs)
    per_image = scores["per_image"]
    assert {"xai.gradcam.mprt_spearman", "xai.gradcam.mprt_ssim"} <= set(per_image)
    assert not any(k.startswith("xai.gaussian.mprt") for k in per_image)
    assert per_image["xai.gradcam.mprt_spearman"].shape == (n,)
    assert list(arrays["mprt_stages"]) == ["4", "0"] and arrays["mprt_gradcam_ssim_curve"].shape == (n, 2)
    assert all(torch.equal(before[k], v) for k, v in method.nets[0].state_dict().items())


def test_without_masks_faithfulness_and_randomisation_are_scored_and_localisation_reads_no_masks():
    """Data without masks (ISIC 2018 Task 3): the maps are still made and judged by what needs no mask."""
    from benchbox.reports.boards import format_metric
    from benchbox.reports.runfolder import parse_metric
    from benchbox.runner.job import explain_and_score, no_mask_entries

    spec, method, inputs = tiny_explained_job(with_masks=False, faithfulness="fast")
    scores, arrays = explain_and_score(spec, method, inputs)
    assert scores["no_masks"] and scores["explainers"] == ["gradcam", "gaussian"]
    assert "masks" not in arrays and arrays["map_gradcam"].shape == (4, 16, 16)
    assert {"xai.gradcam.deletion_auc", "xai.gradcam.insertion_auc", "xai.gaussian.deletion_auc",
            "xai.gradcam.mprt_spearman"} <= set(scores["per_image"])
    assert not any(key.endswith(("iou", "iou_at_mask_area", "pointing_game")) for key in scores["per_image"])
    entries = no_mask_entries(scores["explainers"])
    assert len(entries) == 8 and all(np.isnan(e["value"]) and e["reason"] == "no masks" for e in entries.values())
    assert entries["xai.gradcam.iou"]["higher_is_better"] is True
    assert format_metric(parse_metric("xai.gradcam.iou", entries["xai.gradcam.iou"], Path("xai.json"))) == "NaN (no masks)"


# --- quantus 0.6's MPRT, pinned where benchbox does otherwise -------------------------------------------

quantus_case = pytest.mark.filterwarnings("ignore")


def _quantus_mprt(quantus, **options):
    recorded = []

    def explain_func(model, inputs, targets, **kwargs):
        recorded.append(gradient_maps(model, torch.as_tensor(inputs), targets))
        return recorded[-1]

    metric = quantus.MPRT(disable_warnings=True, normalise=False, abs=False, layer_order="top_down", **options)
    scores = metric(model=tiny_cnn(), x_batch=INPUTS.numpy(), y_batch=TARGETS, explain_func=explain_func, batch_size=64)
    return scores, recorded


@quantus_case
def test_quantus_mprt_spearman_per_layer_matches_ours_on_the_same_maps():
    quantus = pytest.importorskip("quantus")
    scores, recorded = _quantus_mprt(quantus)
    # recorded: a_batch, then the original model's maps, then one set per randomised layer (top down)
    assert list(scores) == ["original", "6", "2", "0"]
    for layer, maps in zip(["6", "2", "0"], recorded[2:]):
        np.testing.assert_allclose(scores[layer], spearman_rows(recorded[0], maps), atol=1e-12)


@quantus_case
def test_quantus_mprt_ssim_crashes_and_compares_flattened_maps():
    # quantus.ssim returns a list when batched and mprt.py calls .tolist() on it. Wrapped to return an
    # array, it still gets maps reshaped to (N, H*W), so it slides a 1-D window along raster order
    # (with data_range from each pair's joint range): not the image SSIM.
    quantus = pytest.importorskip("quantus")
    with pytest.raises(AttributeError, match="tolist"):
        _quantus_mprt(quantus, similarity_func=quantus.ssim)
    as_array = lambda a, b, batched=False, **kwargs: np.asarray(quantus.ssim(a, b, batched=batched))  # noqa: E731
    scores, recorded = _quantus_mprt(quantus, similarity_func=as_array, return_last_correlation=True)
    trained, last = recorded[0], recorded[-1]
    flat = [skimage_ssim(a.ravel(), b.ravel(), data_range=float(np.ptp(np.concatenate([a.ravel(), b.ravel()]))))
            for a, b in zip(trained, last)]
    np.testing.assert_allclose(scores, flat, atol=1e-6)
    assert np.abs(np.asarray(scores) - ssim_maps(trained, last)).max() > 0.01


@quantus_case
def test_quantus_mprt_average_counts_the_unrandomised_model():
    # recompute_average_correlation_per_sample skips the key "orig", but the key is "original".
    quantus = pytest.importorskip("quantus")
    layers, _ = _quantus_mprt(quantus)
    average, _ = _quantus_mprt(quantus, return_average_correlation=True)
    with_original = np.mean([layers[k] for k in layers], axis=0)
    without = np.mean([layers[k] for k in layers if k != "original"], axis=0)
    np.testing.assert_allclose(average, with_original, atol=1e-12)
    assert np.abs(with_original - without).max() > 0.05


@quantus_case
def test_quantus_randomises_per_layer_with_one_seed_and_skips_modules_without_reset():
    pytest.importorskip("quantus")
    from quantus.helpers.model.pytorch_model import PyTorchModel

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
    net.register_parameter("gain", nn.Parameter(torch.ones(1)))  # on a module without reset_parameters
    wrapped = PyTorchModel(net)
    assert wrapped.random_layer_generator_length == 3  # one stage per layer: ~100 explanation passes on a ResNet-50
    randomised = None
    for _, randomised in wrapped.get_random_layer_generator(order="top_down", seed=42):
        pass
    assert torch.equal(randomised[0].weight, randomised[2].weight)  # torch.manual_seed(seed + 1) before each layer
    assert torch.equal(randomised.gain, torch.ones(1))  # never randomised
    ours = copy.deepcopy(net)
    reinitialise_([ours], seed=0)  # what our last stage does to the whole network
    assert not torch.equal(ours[0].weight, ours[2].weight) and not torch.equal(ours.gain, torch.ones(1))


@quantus_case
def test_quantus_normalises_by_the_batch_maximum():
    quantus = pytest.importorskip("quantus")
    batch = np.stack([np.full((4, 4), 2.0), np.full((4, 4), 1.0)])
    batch[:, 0, 0] = 0.0
    assert quantus.normalise_func.normalise_by_max(batch)[1].max() == 0.5  # the second map never reaches 1
    assert normalise_maps(batch)[1].max() == 1.0
