"""dual_task: losses, the curriculum with replay, smoke fits, predicted masks, checkpoints, pretrained loading."""

from __future__ import annotations

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import timm
import torch

import benchbox.methods.dual_task as module
from benchbox.data.arrays import ImageSet
from benchbox.errors import BenchboxError
from benchbox.methods.commands import parameter_counts
from benchbox.methods.dual_task import CurriculumReplay, dual_task_losses, soft_dice_loss
from benchbox.metrics.segmentation import dice_iou
from benchbox.registry import get_card


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


def test_dual_task_loss_is_the_weighted_sum_of_dice_bce_and_ce():
    torch.manual_seed(1)
    mask_logits, class_logits = torch.randn(2, 1, 4, 4), torch.randn(2, 7)
    masks, targets = torch.rand(2, 4, 4) > 0.5, torch.tensor([3, 5])
    p = torch.sigmoid(mask_logits[:, 0]).numpy().astype(np.float64)
    y = masks.numpy()
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=(1, 2))
    dice = 1 - (2 * (p * y).sum(axis=(1, 2)) + 1) / (p.sum(axis=(1, 2)) + y.sum(axis=(1, 2)) + 1)
    logits = class_logits.numpy().astype(np.float64)
    ce = np.log(np.exp(logits).sum(axis=1)) - logits[[0, 1], [3, 5]]
    got = dual_task_losses(mask_logits, class_logits, masks, targets, (0.5, 2.0, 3.0)).numpy()
    np.testing.assert_allclose(got, 0.5 * dice + 2.0 * bce + 3.0 * ce, rtol=1e-5)


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
