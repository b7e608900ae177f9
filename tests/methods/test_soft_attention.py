"""soft_attention and resnet50: the attention block, smoke fits, explainers, two-phase freezing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import benchbox.methods.soft_attention as module
from benchbox.methods.commands import parameter_counts
from benchbox.methods.soft_attention import SoftSpatialAttention
from benchbox.registry import get_card
from benchbox.training.data import normalise


class TrainableSpy:
    """Wraps train_stage: records, per stage, the names of the parameters its optimizer updates."""

    def __init__(self, real):
        self.real, self.stages = real, []

    def __call__(self, network, optimizer, *args, **kwargs):
        names = {id(p): name for name, p in network.named_parameters()}
        self.stages.append({names[id(p)] for group in optimizer.param_groups for p in group["params"]})
        return self.real(network, optimizer, *args, **kwargs)


@pytest.fixture(scope="module")
def fitted(tiny_sets):
    """Both variants fitted in the smoke profile (from scratch), with the trainable sets of each stage."""
    train, val, _ = tiny_sets
    methods, stages = {}, {}
    real = module.train_stage
    try:
        for name in ("soft_attention", "resnet50"):
            module.train_stage = spy = TrainableSpy(real)
            card = get_card(name)
            methods[name] = card.create()
            methods[name].fit(train, val, card.context("smoke", progress=False))
            stages[name] = spy.stages
    finally:
        module.train_stage = real
    return methods, stages


def test_attention_map_is_a_spatial_distribution_and_starts_uniform():
    block = SoftSpatialAttention(channels=8)
    features = torch.rand(2, 8, 3, 3)
    torch.testing.assert_close(block(features), features)  # zero-initialised: uniform map, features unchanged
    with torch.no_grad():
        block.heads.weight.normal_()
    weights = block.weights(features)
    assert weights.shape == (2, 1, 3, 3)
    torch.testing.assert_close(weights.sum(dim=(2, 3)), torch.ones(2, 1))
    torch.testing.assert_close(block(features), features * weights * 9)


def test_parameter_counts_at_paper_size():
    trunk = sum(p.numel() for name, p in torchvision.models.resnet50(weights=None).named_parameters() if not name.startswith("fc."))
    head = 2048 * 256 + 256 + 256 * 7 + 7
    assert parameter_counts(get_card("resnet50"))[0] == pytest.approx((trunk + head) / 1e6)
    attention = 2048 * 16 * 9 + 16
    assert parameter_counts(get_card("soft_attention"))[0] == pytest.approx((trunk + head + attention) / 1e6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["soft_attention", "resnet50"])
def test_smoke_fit_outputs_and_round_trip(fitted, tiny_sets, name, tmp_path):
    _, _, test = tiny_sets
    method = fitted[0][name]
    probs = method.predict_proba(test.images)
    assert probs.shape == (10, 7) and (probs >= 0).all() and np.abs(probs.sum(axis=1) - 1).max() < 1e-9
    maps = method.explain(test.images, np.zeros(10, int), "gradcam")
    assert maps.shape == (10, 48, 48) and maps.min() >= 0 and maps.max() <= 1
    assert np.abs(maps - method.explain(test.images, np.full(10, 4), "gradcam")).max() > 0.1
    method.save(tmp_path)
    again = get_card(name).create()
    again.load(tmp_path)
    np.testing.assert_array_equal(again.predict_proba(test.images), probs)


@pytest.mark.slow
def test_attention_explainer_is_the_models_own_map_for_every_target(fitted, tiny_sets):
    _, _, test = tiny_sets
    method = fitted[0]["soft_attention"]
    maps = method.explain(test.images, np.zeros(10, int), "attention")
    assert maps.shape == (10, 48, 48) and maps.min() >= 0 and maps.max() <= 1
    np.testing.assert_array_equal(maps, method.explain(test.images, np.full(10, 5), "attention"))
    network = method.nets[0].eval()
    with torch.no_grad():  # the map peaks where the attention weights peak
        inputs = torch.from_numpy(test.images[:1]).permute(0, 3, 1, 2)
        weights = network.attention.weights(network.features(normalise(inputs)))[0, 0]
    row, col = np.unravel_index(weights.argmax().item(), weights.shape)
    cell = maps[0, row * 24 : (row + 1) * 24, col * 24 : (col + 1) * 24]
    assert cell.max() == pytest.approx(1.0)


@pytest.mark.slow
def test_pretrained_phase_one_freezes_the_backbone_and_phase_two_only_its_top(tmp_path, tiny_sets, monkeypatch):
    torch.manual_seed(1)
    saved = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(saved, tmp_path / "resnet50.pth")
    spy = TrainableSpy(module.train_stage)
    monkeypatch.setattr(module, "train_stage", spy)
    card = get_card("soft_attention")
    method = card.create()
    context = card.context("smoke", pretrained=True, weights_dir=tmp_path, progress=False)
    context.settings.update(max_train_images=14, max_val_images=7)
    train, val, _ = tiny_sets
    method.fit(train, val, context)
    phase1, phase2 = spy.stages
    assert phase1 == {n for n, _ in method.nets[0].named_parameters() if n.startswith(("head.", "attention."))}
    unfrozen = {n[len("backbone."):] for n in phase2 - phase1}
    assert {n for n, _ in method.nets[0].backbone.layer4.named_parameters(prefix="layer4")} <= unfrozen
    assert not any(n.startswith(("conv1", "bn1", "layer1", "layer2")) for n in unfrozen)
    state = method.nets[0].backbone.state_dict()
    for key in ("conv1.weight", "bn1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.bn1.running_var"):
        assert torch.equal(state[key], saved[key]), key  # below the top 40%: frozen weights and statistics


@pytest.mark.slow
def test_from_scratch_both_phases_train_every_layer(fitted):
    methods, stages = fitted
    for name in ("soft_attention", "resnet50"):
        every = {n for n, _ in methods[name].nets[0].named_parameters()}
        assert stages[name] == [every, every]


HAM_TRAIN_70 = {"akiec": 229, "bcc": 360, "bkl": 769, "df": 80, "mel": 779, "nv": 4693, "vasc": 99}  # 70 % of Table 4.1


@pytest.mark.parametrize("name", ["soft_attention", "resnet50"])
def test_paper_profile_resolves_to_the_papers_recipe(name):
    settings = get_card(name).settings("paper")
    phase1, phase2 = settings["phase1"], settings["phase2"]
    assert settings["input_size"] == 224 and settings["pretrained"] is True  # Secs. 3.3, 4.1
    assert phase1["lr"] == 1e-4  # "initial learning rate of 1e-4"
    assert phase2["lr"] < phase1["lr"]  # "a lower learning rate"
    assert phase1["epochs"] + phase2["epochs"] == 70  # "up to 70 epochs"
    assert settings["val_metric"] == "neg_log_loss"  # ReduceLROnPlateau and EarlyStopping "track validation loss"
    assert phase1["scheduler"] == phase2["scheduler"] == "plateau"
    assert phase2["unfreeze_fraction"] == 0.4  # "The last 40% of the ResNet50 layers"
    assert settings["label_smoothing"] == 0.1 and settings["minority_augment"] == {"per_class": 2000}


def test_minority_augmentation_reaches_2000_per_class_on_hams_training_histogram():
    from benchbox.labels import CLASSES

    counts = np.array([HAM_TRAIN_70[c] for c in CLASSES])
    targets = np.random.default_rng(0).permutation(np.repeat(np.arange(7), counts))
    indices = module.minority_augmentation_indices(targets, 7, 2000, np.random.default_rng(1))
    per_class = np.bincount(targets[indices], minlength=7)
    expected = np.maximum(counts, 2000)  # nv keeps its 4,693 (no undersampling); every other class 2,000
    np.testing.assert_array_equal(per_class, expected)
    assert per_class.sum() == 4693 + 6 * 2000
    uses = np.bincount(indices, minlength=len(targets))
    assert uses.min() >= 1  # every training image at least once
    for c in range(7):  # repeats spread evenly over a class's images: df's 80 images 25 times each
        in_class = uses[targets == c]
        assert in_class.max() - in_class.min() <= 1
    assert (uses[targets == CLASSES.index("df")] == 25).all()
    with pytest.raises(ValueError, match="positive image count"):
        module.minority_augmentation_indices(targets, 7, 0, np.random.default_rng(1))


def test_paper_batches_draw_the_topped_up_indices(tiny_sets):
    train, _, _ = tiny_sets  # 40 images, classes 0..6 in turn: 6 or 5 each
    card = get_card("soft_attention")
    method = card.create()
    method.settings = dict(card.settings("smoke"), minority_augment={"per_class": 9})
    loader = method._batches(train, seed=0)
    drawn = np.array(list(loader.sampler))
    assert len(drawn) == 7 * 9 and np.bincount(train.labels[drawn], minlength=7).tolist() == [9] * 7
    method.settings["oversample"] = {"kind": "duplicate", "fraction": 1.0}
    with pytest.raises(ValueError, match="soft_attention: set either minority_augment / affine_augment or oversample"):
        method._batches(train, seed=0)


def test_affine_augmentation_rotates_image_and_mask_alike_and_replays_its_draws(monkeypatch):
    from benchbox.training.data import Augmentation

    base = Augmentation(flips=False, rot90=False, colour_jitter=0.0)
    augment = module.AffineAugmentation(base, degrees=45, zoom=0.1, shear=10)
    image = torch.zeros(3, 9, 9, dtype=torch.uint8)
    image[:, 1, 4] = 255  # a bright pixel three rows above the centre
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask[1, 4] = True
    monkeypatch.setattr(augment, "_affine_draw", lambda: (-90.0, 1.0, 0.0))  # a planted quarter turn
    turned, turned_mask = augment(image, mask)
    torch.testing.assert_close(turned, image.rot90(1, (-2, -1)))  # torch's counter-clockwise quarter turn
    assert turned_mask.nonzero().tolist() == [[4, 1]] and turned_mask.dtype == torch.bool
    monkeypatch.undo()
    torch.manual_seed(3)
    draws = [augment._affine_draw() for _ in range(200)]
    angles, scales, shears = np.array(draws).T
    assert np.abs(angles).max() <= 45 and np.abs(angles).max() > 40
    assert 0.9 <= scales.min() and scales.max() <= 1.1 and np.abs(shears).max() <= 10
    torch.manual_seed(4)
    augment(image, mask)
    after_call = torch.get_rng_state()
    torch.manual_seed(4)
    augment.draw(9, 9)
    assert torch.equal(torch.get_rng_state(), after_call)  # a resumed worker replays exactly the call's draws
    with pytest.raises(ValueError, match="affine_augment"):
        module.AffineAugmentation(base, degrees=10, zoom=1.5, shear=0)


def test_paper_profile_batches_use_the_affine_augmentation(tiny_sets):
    train, _, _ = tiny_sets
    card = get_card("soft_attention")
    method = card.create()
    method.settings = dict(card.settings("paper"), num_workers=0)  # the paper's 4 workers are a GPU machine's
    loader = method._batches(train, seed=0)
    assert isinstance(loader.dataset.augmentation, module.AffineAugmentation)
    assert (loader.dataset.augmentation.degrees, loader.dataset.augmentation.zoom, loader.dataset.augmentation.shear) == (45, 0.1, 10)
    assert len(list(loader.sampler)) == 7 * 2000  # every tiny class topped up to the paper's 2,000
    method.settings = card.settings("smoke")
    assert not isinstance(method._batches(train, seed=0).dataset.augmentation, module.AffineAugmentation)
