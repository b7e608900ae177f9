"""recall_ensemble: grouped-fold members, the 3 x TTA predictor, the recall-constrained threshold, Grad-CAM++."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from skimage.color import rgb2lab
from sklearn.metrics import f1_score, recall_score

import benchbox.methods.recall_ensemble as module
from benchbox.data.arrays import ImageSet
from benchbox.errors import BenchboxError
from benchbox.methods.commands import parameter_counts
from benchbox.methods.recall_ensemble import recalibrated_threshold
from benchbox.metrics.binary import recall_constrained_threshold
from benchbox.registry import get_card

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def fitted(tiny_sets):
    """The smoke-profile ensemble, with the (training part, held-out part) each member was fitted on."""
    train, val, _ = tiny_sets
    card = get_card("recall_ensemble")
    method = card.create()
    parts = []
    real = module.RecallEnsemble.fit_member

    def spy(self, network, train_part, held_out, *args, **kwargs):
        parts.append((network, train_part, held_out))
        return real(self, network, train_part, held_out, *args, **kwargs)

    module.RecallEnsemble.fit_member = spy
    try:
        method.fit(train, val, card.context("smoke", progress=False))
    finally:
        module.RecallEnsemble.fit_member = real
    return method, parts


@pytest.mark.slow
def test_three_members_are_trained_on_grouped_folds(fitted, tiny_sets):
    method, parts = fitted
    train = tiny_sets[0]
    assert len(method.nets) == 3 and len(parts) == 3
    assert [id(network) for network, _, _ in parts] == [id(network) for network in method.nets]
    held_out_ids = []
    for _, train_part, held_out in parts:
        assert not set(train_part.groups) & set(held_out.groups)  # no lesion on both sides of a fold
        assert sorted([*train_part.image_ids, *held_out.image_ids]) == sorted(train.image_ids)
        held_out_ids.extend(held_out.image_ids)
    assert sorted(held_out_ids) == sorted(train.image_ids)  # the held-out parts partition the training set
    for i in range(3):  # each group is held out exactly once
        for j in range(i + 1, 3):
            assert not set(parts[i][2].groups) & set(parts[j][2].groups)
    first, second = (net.head[1].weight.detach() for net in method.nets[:2])
    assert not torch.equal(first, second)


@pytest.mark.slow
def test_prediction_is_the_mean_over_members_and_tta_views(fitted, tiny_sets):
    method, _ = fitted
    test = tiny_sets[2]
    probs = method.predict_proba(test.images)
    assert probs.shape == (10, 2) and (probs >= 0).all() and np.abs(probs.sum(axis=1) - 1).max() < 1e-9
    x = torch.from_numpy(((test.images / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2)).float()
    views = [x, x.flip(-1), x.flip(-2)]  # the card's identity, hflip, vflip
    with torch.no_grad():
        expected = np.mean([torch.softmax(net.eval()(v), dim=1).numpy() for net in method.nets for v in views], axis=0)
    np.testing.assert_allclose(probs, expected, atol=1e-5)


@pytest.mark.slow
def test_threshold_is_the_recall_constrained_f1_optimum_on_validation(fitted, tiny_sets):
    method, _ = fitted
    val = tiny_sets[1]
    score = method.predict_proba(val.images)[:, 1]
    feasible = []
    for t in np.round(np.arange(0, 1.0 + 1e-9, 0.02), 10):  # an independent sweep with scikit-learn
        flagged = (score >= t).astype(int)
        if recall_score(val.malignant, flagged) >= 0.85:
            feasible.append((f1_score(val.malignant, flagged), -t))
    assert method.operating_threshold() == pytest.approx(-max(feasible)[1])


def _skin_images(rgb: tuple[int, int, int], n: int) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (n, 32, 32, 3)).copy()


def test_threshold_rule_on_a_hand_made_validation_set():
    light_rgb, dark_rgb = (235, 200, 180), (110, 75, 55)
    for rgb, expected in ((light_rgb, "light"), (dark_rgb, "dark")):  # the colours really are on either side of 28 degrees
        lightness, _, b = rgb2lab(np.array([[rgb]], np.uint8))[0, 0]
        assert (np.degrees(np.arctan2(lightness - 50, b)) > 28) == (expected == "light")
    # light group: malignant 0.9 0.7 0.5 0.3, benign 0.8 0.45 0.4 0.2 0.1 0.05; recall >= 0.75 needs t <= 0.5,
    # and F1 = 0.75 for t in (0.45, 0.5] -> the lowest such grid point, 0.46.
    # dark group: malignant 0.6 0.35 0.25 0.15, benign 0.5 0.3 0.2 0.1 0.05 0.02; best feasible F1 = 8/11 for
    # t in (0.1, 0.15] -> 0.12. Both groups together: F1 = 0.7 for t in (0.2, 0.25] -> 0.22.
    score = np.array([0.9, 0.7, 0.5, 0.3, 0.8, 0.45, 0.4, 0.2, 0.1, 0.05,
                      0.6, 0.35, 0.25, 0.15, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02])  # fmt: skip
    labels = np.tile([4, 4, 4, 4, 5, 5, 5, 5, 5, 5], 2)  # mel = malignant, nv = benign
    val = ImageSet(
        image_ids=np.array([f"V{i}" for i in range(20)]),
        images=np.concatenate([_skin_images(light_rgb, 10), _skin_images(dark_rgb, 10)]),
        labels=labels,
        groups=np.array([f"G{i}" for i in range(20)]),
    )
    method = get_card("recall_ensemble").create()
    method.settings = {"recall_target": 0.75, "threshold_step": 0.02}
    method.predict_proba = lambda images: np.stack([1 - score, score], axis=1)
    method.choose_thresholds(val)
    assert method.operating_threshold() == pytest.approx(0.22)
    # at t* = 0.22 the light group's malignant scores all pass (recall 1) and the dark group's 0.15 fails (3/4)
    assert method.skin_tone_thresholds() == {
        "light": {"images": 10, "malignant": 4, "threshold": pytest.approx(0.46), "recall_at_default": 1.0},
        "dark": {"images": 10, "malignant": 4, "threshold": pytest.approx(0.12), "recall_at_default": 0.75},
    }
    # the fairness calibration: the dark group (lowest recall at t*) sets one threshold for every image
    method.settings = {**method.settings, "operating_rule": "skin_tone_recalibrated"}
    assert method.operating_threshold() == pytest.approx(0.12)
    method.settings = {**method.settings, "operating_rule": "recall_constrained"}
    only_benign_dark = ImageSet(val.image_ids, val.images, np.where(np.arange(20) < 10, labels, 5), val.groups)
    method.choose_thresholds(only_benign_dark)
    dark = method.skin_tone_thresholds()["dark"]
    assert dark["threshold"] is None and dark["malignant"] == 0 and "lack" in dark["reason"]
    assert method.operating_threshold() == recall_constrained_threshold(only_benign_dark.malignant, score, 0.75)
    method.settings = {**method.settings, "operating_rule": "skin_tone_recalibrated"}  # only light has a threshold
    assert method.operating_threshold() == pytest.approx(min(method.threshold, method.skin_tone_thresholds()["light"]["threshold"]))
    method.settings = {**method.settings, "operating_rule": "lowest"}
    with pytest.raises(BenchboxError, match="operating_rule 'lowest'"):
        method.operating_threshold()


def test_recalibrated_threshold_only_lowers_the_default_and_falls_back_without_groups():
    groups = {"light": {"threshold": 0.5, "recall_at_default": 0.9}, "dark": {"threshold": 0.3, "recall_at_default": 0.6}}
    assert recalibrated_threshold(0.46, groups) == 0.3
    groups["dark"]["threshold"] = 0.6  # the worst group's own rule would raise the threshold: recall must not fall
    assert recalibrated_threshold(0.46, groups) == 0.46
    groups["light"]["recall_at_default"] = 0.5  # now light is the worse-served group
    assert recalibrated_threshold(0.46, groups) == 0.46 and recalibrated_threshold(0.55, groups) == 0.5
    assert recalibrated_threshold(0.46, {"light": {"threshold": None}, "dark": {"threshold": None}}) == 0.46


@pytest.mark.slow
def test_gradcam_plus_plus_maps_are_sharpened_to_the_top_quarter_and_class_specific(fitted, tiny_sets, monkeypatch):
    method, _ = fitted
    images = tiny_sets[2].images[:4]
    benign = method.explain(images, np.zeros(4, int), "gradcam++")
    malignant = method.explain(images, np.ones(4, int), "gradcam++")
    assert benign.shape == (4, 48, 48) and benign.dtype == np.float32 and np.abs(benign - malignant).max() > 0.1
    monkeypatch.setitem(method.settings, "cam_top_fraction", None)
    raw = method.explain(images, np.ones(4, int), "gradcam++")  # the members' mean map, unsharpened
    flat = raw.reshape(4, -1)
    cut = -np.sort(-flat, axis=1)[:, int(np.ceil(0.25 * flat.shape[1])) - 1]  # the 25%-th largest value
    scaled = (raw - raw.min(axis=(1, 2), keepdims=True)) / np.ptp(raw, axis=(1, 2), keepdims=True)
    expected = np.where(raw >= cut[:, None, None], scaled, 0)  # kept pixels keep their min-max scaled values
    np.testing.assert_allclose(malignant, expected, atol=1e-6)
    assert ((malignant > 0).mean(axis=(1, 2)) <= 0.26).all() and malignant.max() == 1 and malignant.min() == 0


@pytest.mark.slow
def test_save_load_round_trip_keeps_predictions_and_thresholds(fitted, tiny_sets, tmp_path):
    method, _ = fitted
    test = tiny_sets[2]
    method.save(tmp_path)
    again = get_card("recall_ensemble").create()
    again.load(tmp_path)
    assert len(again.nets) == 3
    np.testing.assert_array_equal(again.predict_proba(test.images), method.predict_proba(test.images))
    assert again.operating_threshold() == method.operating_threshold() is not None
    assert again.skin_tone_thresholds() == method.skin_tone_thresholds()
    assert set(again.skin_tone_thresholds()) == {"light", "dark"}


def test_pretrained_members_load_imagenet_weights_and_train_the_backbone_slower(tmp_path, tiny_sets, monkeypatch):
    torch.manual_seed(3)
    saved = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(saved, tmp_path / "resnet50.pth")
    seen = []

    def no_training(network, optimizer, *args, **kwargs):
        loaded = all(torch.equal(network.backbone.state_dict()[k], saved[k]) for k in saved if not k.startswith("fc."))
        seen.append((loaded, [group["lr"] for group in optimizer.param_groups]))

    monkeypatch.setattr(module, "train_stage", no_training)
    card = get_card("recall_ensemble")
    train, val, _ = tiny_sets
    settings = card.settings("smoke")
    card.create().fit(train, val, card.context("smoke", pretrained=True, weights_dir=tmp_path, progress=False))
    assert seen == [(True, [settings["lr_backbone"], settings["lr_head"]])] * 3
    seen.clear()
    card.create().fit(train, val, card.context("smoke", progress=False))  # from scratch: one rate
    assert seen == [(False, [settings["lr_head"], settings["lr_head"]])] * 3


def test_parameter_count_at_paper_size_is_three_resnet50s_with_two_class_heads():
    trunk = sum(p.numel() for name, p in torchvision.models.resnet50(weights=None).named_parameters() if not name.startswith("fc."))
    millions, note = parameter_counts(get_card("recall_ensemble"))
    assert millions == pytest.approx(3 * (trunk + 2048 * 2 + 2) / 1e6) and note == "at 299 px"
    assert 70.5 < millions < 70.6
