"""dual_task and dual_task_unet_r34: the paper's loss, architectures and procedure, the curriculum with replay, fits, masks, checkpoints, pretrained loading."""

from __future__ import annotations

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import timm
import torch
import torchvision

import benchbox.methods.dual_task as module
from benchbox.data.arrays import ImageSet
from benchbox.errors import BenchboxError
from benchbox.methods.commands import parameter_counts
from benchbox.methods.dual_task import CurriculumReplay, dual_task_losses, soft_dice_loss
from benchbox.metrics.segmentation import dice_iou
from benchbox.registry import get_card
from benchbox.training.data import model_inputs


def disc_image_set(n: int, seed: int, size: int = 64) -> ImageSet:
    """A planted segmentation task: a bright disc (random centre and radius) on a dark noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(0.3 * size, 0.7 * size, (2, n))
    radius = rng.uniform(0.12 * size, 0.22 * size, n)
    masks = (yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2 < radius[:, None, None] ** 2
    images = np.where(masks[..., None], 200.0, 50.0) + rng.normal(0, 15, (n, size, size, 3))
    return ImageSet(
        image_ids=np.array([f"DISC_{seed}_{i}" for i in range(n)]),
        images=np.clip(images, 0, 255).astype(np.uint8),
        labels=np.arange(n) % 7,
        groups=np.array([f"D_{seed}_{i}" for i in range(n)]),
        masks=masks,
    )


@pytest.fixture(scope="module")
def mask_sets(make_image_set):
    """(train, val, test) random ImageSets of 64 px with disc masks: 40, 14 and 10 images."""
    return make_image_set(40, 64, 0, masks=True), make_image_set(14, 64, 1, masks=True), make_image_set(10, 64, 2, masks=True)


@pytest.fixture(scope="module")
def fitted(mask_sets):
    train, val, _ = mask_sets
    card = get_card("dual_task")
    method = card.create()
    method.fit(train, val, card.context("smoke", progress=False))
    return method


def test_soft_dice_loss_per_image_on_hand_worked_cases():
    masks = torch.zeros(3, 2, 2, dtype=torch.bool)
    masks[0, 0, 0] = masks[1, 0, 0] = True
    logits = torch.zeros(3, 1, 2, 2)  # image 0: p = 0.5 everywhere
    logits[1] = torch.where(masks[1], 30.0, -30.0)  # image 1: the mask itself
    logits[2] = -30.0  # image 2: empty prediction of an empty mask
    # image 0: sum p*t = 0.5, sum p = 2, sum t = 1 -> 1 - (2 * 0.5 + 1) / (2 + 1 + 1) = 0.5
    torch.testing.assert_close(soft_dice_loss(logits, masks), torch.tensor([0.5, 0.0, 0.0]), atol=1e-6, rtol=0)


def test_dual_task_loss_is_dice_plus_cross_entropy_and_nothing_else():
    """The paper's two terms (Sec. 3: "Dice Loss for segmentation and Cross-Entropy Loss for classification"), unweighted."""
    masks = torch.zeros(2, 2, 2, dtype=torch.bool)
    masks[:, 0, 0] = True
    mask_logits = torch.zeros(2, 1, 2, 2)  # image 0: p = 0.5 everywhere
    mask_logits[1] = torch.where(masks[1], 30.0, -30.0)  # image 1: the mask itself
    class_logits = torch.zeros(2, 7)  # image 0: uniform over 7 classes
    class_logits[1, 0] = float(np.log(3.0))  # image 1: p(class 0) = 3 / (3 + 6) = 1/3
    targets = torch.tensor([4, 0])
    # image 0: Dice loss 1 - (2 * 0.5 + 1) / (2 + 1 + 1) = 0.5, CE ln 7; a BCE term would add ln 2 more
    # image 1: Dice loss 0, CE -ln(1/3) = ln 3; a BCE term would add ~0
    expected = torch.tensor([0.5 + np.log(7.0), np.log(3.0)], dtype=torch.float32)
    torch.testing.assert_close(dual_task_losses(mask_logits, class_logits, masks, targets), expected, atol=1e-5, rtol=0)


def test_curriculum_moves_from_the_natural_class_distribution_to_a_balanced_one():
    targets = np.repeat([0, 1, 2], [60, 30, 10])
    schedule = CurriculumReplay(targets, epochs=3, replay_fraction=0.2, replay_pool=0.2, rng=np.random.default_rng(0))
    first = schedule.epoch_indices(0)  # no losses yet: no replay, every image once
    np.testing.assert_array_equal(np.sort(first), np.arange(100))
    # middle epoch: shares proportional to sqrt(n_c) = 7.75, 5.48, 3.16 -> 47.27, 33.43, 19.30 of 100;
    # floors 47 + 33 + 19 = 99, the one slot left goes to the largest remainder (0.43)
    assert schedule.class_counts(1, 100) == {0: 47, 1: 34, 2: 19}
    assert schedule.class_counts(2, 100) == {0: 34, 1: 33, 2: 33}  # last epoch: balanced
    last = schedule.curriculum_indices(2, 100)
    assert np.bincount(targets[last]).tolist() == [34, 33, 33]
    assert len(np.unique(last[targets[last] == 0])) == 34  # a common class is subsampled without repeats
    rare = np.bincount(last[targets[last] == 2], minlength=100)[90:]
    assert rare.min() == 3 and rare.max() == 4  # a rare class cycles through its images evenly (33 slots, 10 images)


def test_replay_draws_only_the_highest_loss_images_and_fills_a_fixed_share_of_the_epoch():
    targets = np.repeat([0, 1], [50, 50])
    schedule = CurriculumReplay(targets, epochs=4, replay_fraction=0.2, replay_pool=0.1, rng=np.random.default_rng(1))
    assert len(schedule.replay_indices(5)) == 0  # nothing recorded yet
    losses = np.random.default_rng(2).random(100)
    schedule.record(np.arange(100), losses)
    hardest = np.argsort(-losses)[:10]
    np.testing.assert_array_equal(np.sort(schedule.hard_pool()), np.sort(hardest))
    replays = schedule.replay_indices(200)
    assert np.isin(replays, hardest).all() and len(np.unique(replays)) == 10  # stochastic: the whole pool is visited
    epoch = schedule.epoch_indices(1)
    assert len(epoch) == 100 and np.isin(epoch[80:], hardest).all()
    assert np.bincount(targets[epoch[:80]]).tolist() == [40, 40]


@pytest.mark.slow
def test_smoke_fit_gives_probabilities_class_specific_maps_and_masks(fitted, mask_sets):
    _, _, test = mask_sets
    probs = fitted.predict_proba(test.images)
    assert probs.shape == (10, 7) and (probs >= 0).all() and np.abs(probs.sum(axis=1) - 1).max() < 1e-9
    maps = fitted.explain(test.images, np.zeros(10, int), "gradcam")
    other = fitted.explain(test.images, np.full(10, 3), "gradcam")
    assert maps.shape == (10, 64, 64) and maps.dtype == np.float32 and maps.min() >= 0 and maps.max() <= 1
    assert np.abs(maps - other).max() > 0.1
    masks = fitted.predicted_masks(test.images)
    assert masks.shape == (10, 64, 64) and masks.dtype == bool


@pytest.mark.slow
def test_planted_discs_are_segmented_far_better_than_a_trivial_mask():
    train, val, test = disc_image_set(32, 0), disc_image_set(16, 1), disc_image_set(16, 2)
    card = get_card("dual_task")
    context = card.context("smoke", progress=False)
    context.settings.update(epochs=4, patience=None, lr=0.003, batch_size=8)  # measured: Dice 0.92 on the test discs
    method = card.create()
    method.fit(train, val, context)
    dice = np.nanmean(dice_iou(method.predicted_masks(test.images), test.masks)[0])
    everything = np.nanmean(dice_iou(np.ones_like(test.masks), test.masks)[0])
    assert everything < 0.3 and dice > 0.8  # all-ones mask: 0.19


@pytest.mark.slow
def test_save_load_round_trip_gives_identical_predictions_masks_and_maps(fitted, mask_sets, tmp_path):
    _, _, test = mask_sets
    fitted.save(tmp_path)
    again = get_card("dual_task").create()
    again.load(tmp_path)
    np.testing.assert_array_equal(again.predict_proba(test.images), fitted.predict_proba(test.images))
    np.testing.assert_array_equal(again.predicted_masks(test.images), fitted.predicted_masks(test.images))
    np.testing.assert_array_equal(again.explain(test.images[:2], np.array([1, 2]), "gradcam"),
                                  fitted.explain(test.images[:2], np.array([1, 2]), "gradcam"))  # fmt: skip


@pytest.mark.slow
def test_the_same_seed_gives_the_same_model(fitted, mask_sets):
    train, val, test = mask_sets
    card = get_card("dual_task")
    method = card.create()
    method.fit(train, val, card.context("smoke", progress=False))
    np.testing.assert_array_equal(method.predict_proba(test.images), fitted.predict_proba(test.images))
    np.testing.assert_array_equal(method.predicted_masks(test.images), fitted.predicted_masks(test.images))


def _must_not_train(*args, **kwargs):
    raise AssertionError("training started")


def test_fit_without_masks_fails_before_training_and_names_the_method(make_image_set, monkeypatch):
    monkeypatch.setattr(module, "train_stage", _must_not_train)
    card = get_card("dual_task")
    train, val = make_image_set(20, 64, 0), make_image_set(10, 64, 1, masks=True)
    with pytest.raises(BenchboxError, match=r"'dual_task' needs lesion masks and the train images have none"):
        card.create().fit(train, val, card.context("smoke", progress=False))


def test_input_size_must_be_a_multiple_of_32(mask_sets, monkeypatch):
    monkeypatch.setattr(module, "train_stage", _must_not_train)
    card = get_card("dual_task")
    context = card.context("smoke", progress=False)
    context.settings["input_size"] = 48
    with pytest.raises(BenchboxError, match="not a multiple of 32"):
        card.create().fit(*mask_sets[:2], context)


def test_parameter_count_at_paper_size_is_one_shared_encoder_a_unet_decoder_and_a_head():
    encoder = sum(
        p.numel() for name, p in timm.create_model("tf_efficientnet_b0").named_parameters()
        if not name.startswith(("conv_head", "bn2", "classifier"))  # the ImageNet head is not part of the encoder
    )  # fmt: skip
    unet = smp.Unet("tu-tf_efficientnet_b0", encoder_weights=None, classes=1)  # default decoder, as in the paper profile
    decoder = sum(p.numel() for name, p in unet.named_parameters() if not name.startswith("encoder."))
    millions, note = parameter_counts(get_card("dual_task"))
    assert millions == pytest.approx((encoder + decoder + 320 * 7 + 7) / 1e6) and note == "at 224 px"
    print(f"dual_task parameters at 224 px: {millions:.2f}M")


def test_paper_profile_loads_local_encoder_weights_before_training(tmp_path, mask_sets, monkeypatch):
    torch.manual_seed(5)
    saved = timm.create_model("tf_efficientnet_b0").state_dict()
    torch.save(saved, tmp_path / "tf_efficientnet_b0.pth")
    seen = {}
    monkeypatch.setattr(module, "train_stage", lambda network, *a, **k: seen.update(network.unet.encoder.model.state_dict()))
    card = get_card("dual_task")
    card.create().fit(*mask_sets[:2], card.context("smoke", pretrained=True, weights_dir=tmp_path, progress=False))
    assert seen and all(torch.equal(value, saved[key]) for key, value in seen.items())


# --- the paper's two architectures and its training procedure (Fiaz et al. 2025) ------------------

READINGS = ("dual_task", "dual_task_unet_r34")


def test_each_reading_has_the_encoders_its_passage_names():
    """dual_task: one EfficientNet-B0 encoder under both tasks (Sec. 4.2); dual_task_unet_r34: U-Net-ResNet34 + EfficientNet-B0 (Table 4)."""
    shared = get_card("dual_task").create()
    shared.build(get_card("dual_task").settings("paper"))
    net = shared.nets[0]
    assert isinstance(net.unet.encoder.model, timm.models.efficientnet.EfficientNetFeatures)
    assert net.unet.encoder.model.default_cfg["architecture"] == "tf_efficientnet_b0"
    assert net.unet.classification_head[-2].in_features == 320  # the head pools the shared encoder's last stage
    assert net.last_stage is net.unet.encoder.model.blocks[-1]

    separate = get_card("dual_task_unet_r34").create()
    separate.build(get_card("dual_task_unet_r34").settings("paper"))
    net = separate.nets[0]
    encoder = net.segmenter.encoder
    assert isinstance(encoder, torchvision.models.ResNet) and [len(layer) for layer in (encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4)] == [3, 4, 6, 3]
    assert all(isinstance(block, torchvision.models.resnet.BasicBlock) for block in encoder.layer4)  # ResNet34, not 50
    assert isinstance(net.classifier, torchvision.models.EfficientNet) and net.classifier.classifier[1].out_features == 7
    assert net.last_stage is net.classifier.features[-1]
    segmenter_ids = {id(p) for p in net.segmenter.parameters()}
    assert not any(id(p) in segmenter_ids for p in net.classifier.parameters())  # no shared weights


def test_table4_reading_counts_resnet34_encoder_unet_decoder_and_efficientnet_b0():
    """28.45M at 224 px: torchvision's documented resnet34 (21,797,672) less fc, smp's decoder, efficientnet_b0 (5,288,548) with a 7-class head."""
    resnet34_trunk = 21_797_672 - (512 * 1000 + 1000)
    efficientnet_b0 = 5_288_548 - (1280 * 1000 + 1000) + (1280 * 7 + 7)
    unet = smp.Unet("resnet34", encoder_weights=None, classes=1)  # smp's default decoder, as in the paper profile
    decoder = sum(p.numel() for name, p in unet.named_parameters() if not name.startswith("encoder."))
    assert sum(p.numel() for p in unet.encoder.parameters()) == resnet34_trunk
    millions, note = parameter_counts(get_card("dual_task_unet_r34"))
    assert millions * 1e6 == pytest.approx(resnet34_trunk + decoder + efficientnet_b0) and note == "at 224 px"
    assert millions == pytest.approx(28.45, abs=0.01)


@pytest.mark.parametrize("name", READINGS)
def test_paper_profile_is_adam_20_constant_epochs_at_batch_16_on_224_px(name, mask_sets, monkeypatch):
    """Sec. 3: "Adam optimizer for 20 epochs, with a constant learning rate and no explicit weight decay", batch 16, 224 x 224."""
    card = get_card(name)
    settings = card.settings("paper")
    assert (settings["input_size"], settings["batch_size"], settings["epochs"]) == (224, 16, 20)
    seen = {}
    monkeypatch.setattr(module, "train_stage", lambda network, optimizer, batches, batch_loss, validate, stage, *a, **k: seen.update(
        optimizer=optimizer, stage=stage, validate=validate, network=network))
    context = card.context("paper", pretrained=False, progress=False)
    context.settings.update(input_size=64, num_workers=0)  # the procedure at paper settings, on the small test images
    method = card.create()
    method.fit(*mask_sets[:2], context)
    optimizer, stage = seen["optimizer"], seen["stage"]
    assert type(optimizer) is torch.optim.Adam
    assert optimizer.param_groups[0]["lr"] == 1e-4 and optimizer.param_groups[0]["weight_decay"] == 0.0
    assert stage.epochs == 20 and stage.scheduler == "none" and stage.patience is None  # constant rate, every epoch run
    # checkpoint selection: the lowest validation loss (Dice + CE on the validation images), negated as a score
    val = mask_sets[1]
    network = seen["network"].eval()
    with torch.no_grad():
        mask_logits, class_logits = network.both(model_inputs(val.images, "cpu"))
        expected = dual_task_losses(mask_logits, class_logits, torch.from_numpy(val.masks), torch.from_numpy(val.labels)).mean().item()
    assert seen["validate"](network) == pytest.approx(-expected, rel=1e-5)


def test_cpu_profiles_of_the_table4_reading_cost_no_more_than_dual_task():
    """A step of the two networks costs ~2.1x the shared encoder's (1.10 s vs 0.52 s, 16 images at 64 px, one thread)."""
    shared, separate = get_card("dual_task"), get_card("dual_task_unet_r34")
    for profile in ("smoke", "quick"):
        a, b = shared.settings(profile), separate.settings(profile)
        assert (a["input_size"], a["batch_size"], a.get("max_train_images")) == (b["input_size"], b["batch_size"], b.get("max_train_images"))
        assert b["epochs"] <= -(-a["epochs"] // 2)  # half of dual_task's epochs, rounded up, or fewer


def test_table4_reading_loads_torchvision_weights_into_both_networks(tmp_path, mask_sets, monkeypatch):
    torch.manual_seed(6)
    resnet34, efficientnet = torchvision.models.resnet34().state_dict(), torchvision.models.efficientnet_b0().state_dict()
    torch.save(resnet34, tmp_path / "resnet34.pth")
    torch.save(efficientnet, tmp_path / "efficientnet_b0.pth")
    seen = {}
    monkeypatch.setattr(module, "train_stage", lambda network, *a, **k: seen.update(
        encoder=network.segmenter.encoder.state_dict(), classifier=network.classifier.state_dict()))
    card = get_card("dual_task_unet_r34")
    card.create().fit(*mask_sets[:2], card.context("smoke", pretrained=True, weights_dir=tmp_path, progress=False))
    assert seen["encoder"] and all(torch.equal(value, resnet34[key]) for key, value in seen["encoder"].items())
    head = [key for key in efficientnet if key.startswith("classifier.")]
    assert all(torch.equal(value, efficientnet[key]) for key, value in seen["classifier"].items() if key not in head)
    assert seen["classifier"]["classifier.1.weight"].shape == (7, 1280)


def test_table4_reading_fits_predicts_segments_explains_and_round_trips(mask_sets, tmp_path):
    """A two-step fit (16 images, batch 8): every path of the two-network model runs (about 3 s)."""
    train, val, test = mask_sets
    card = get_card("dual_task_unet_r34")
    context = card.context("smoke", progress=False)
    context.settings.update(max_train_images=16, max_val_images=8, batch_size=8, epochs=1, patience=None)
    method = card.create()
    method.fit(train, val, context)
    probs = method.predict_proba(test.images[:4])
    assert probs.shape == (4, 7) and np.abs(probs.sum(axis=1) - 1).max() < 1e-6
    assert method.predicted_masks(test.images[:4]).shape == (4, 64, 64)
    maps = method.explain(test.images[:2], np.array([0, 0]), "gradcam")
    assert maps.shape == (2, 64, 64) and maps.min() >= 0 and maps.max() <= 1
    method.save(tmp_path)
    again = card.create()
    again.load(tmp_path)
    np.testing.assert_array_equal(again.predict_proba(test.images[:4]), probs)
    np.testing.assert_array_equal(again.predicted_masks(test.images[:4]), method.predicted_masks(test.images[:4]))
