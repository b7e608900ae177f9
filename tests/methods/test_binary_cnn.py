"""xception, inception_v3, efficientnet_b0 (+ efficientnet_b0_128): the paper's sizes and procedure, loss weights, smoke fits, explainers, checkpoints, pretrained loading, aux head."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torchvision
from sklearn.utils.class_weight import compute_class_weight

import benchbox.methods.binary_cnn as module
from benchbox.data.arrays import ImageSet
from benchbox.errors import BenchboxError
from benchbox.methods.binary_cnn import INCEPTION_AUX_MIN_INPUT, UnitRangeInput, epoch_class_weights
from benchbox.methods.commands import parameter_counts
from benchbox.registry import get_card
from benchbox.training.data import batch_to_device, model_inputs
from benchbox.training.sampling import duplicate_oversampling

VARIANTS = ("xception", "inception_v3", "efficientnet_b0")


def _image_set(make_image_set, name: str, n: int, seed: int) -> ImageSet:
    return make_image_set(n, size=get_card(name).input_size("smoke"), seed=seed)


@pytest.fixture(scope="module")
def fitted(make_image_set):
    """Each variant fitted in the smoke profile at its smoke input size."""
    methods = {}
    for name in VARIANTS:
        card = get_card(name)
        methods[name] = card.create()
        methods[name].fit(_image_set(make_image_set, name, 40, 0), _image_set(make_image_set, name, 14, 1), card.context("smoke", progress=False))
    return methods


def test_class_weights_balance_the_epoch_after_oversampling():
    targets = np.repeat([0, 1], [80, 20])
    epoch = targets[duplicate_oversampling(targets, 2, 0.5, np.random.default_rng(0))]  # 80 benign, 40 malignant
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=epoch)
    weights = epoch_class_weights(targets, {"oversample": {"kind": "duplicate", "fraction": 0.5}})
    np.testing.assert_allclose(weights, expected)
    np.testing.assert_allclose(weights, [120 / 160, 120 / 80])
    raw = compute_class_weight("balanced", classes=np.array([0, 1]), y=targets)
    np.testing.assert_allclose(epoch_class_weights(targets, {}), raw)


def test_unit_range_input_undoes_imagenet_normalisation_into_minus_one_to_one():
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
    scaled = UnitRangeInput()(model_inputs(images, "cpu"))
    expected = torch.from_numpy(images.transpose(0, 3, 1, 2) / 127.5 - 1).float()
    torch.testing.assert_close(scaled, expected, atol=1e-5, rtol=0)


def test_parameter_counts_at_paper_size_match_the_known_architectures():
    counts = {name: parameter_counts(get_card(name)) for name in VARIANTS}
    assert counts["xception"][1] == "at 299 px" and counts["efficientnet_b0"][1] == "at 224 px"
    imagenet_head_minus_ours = (2048 * 1000 + 1000 - 2048 * 2 - 2) / 1e6
    assert counts["xception"][0] == pytest.approx(sum(p.numel() for p in timm.create_model("legacy_xception").parameters()) / 1e6 - imagenet_head_minus_ours)
    assert counts["xception"][0] + imagenet_head_minus_ours == pytest.approx(22.9, abs=0.06)  # Xception: 22.9M with its ImageNet head
    assert counts["inception_v3"][0] + imagenet_head_minus_ours == pytest.approx(23.8, abs=0.05)  # InceptionV3 without aux: 23.8M
    assert counts["inception_v3"][0] == pytest.approx(21.8, abs=0.05)  # the deployed predictor has no auxiliary head
    assert counts["efficientnet_b0"][0] == pytest.approx(4.01, abs=0.01)  # 5.29M - 1280 x 1000 head + 1280 x 2


def test_efficientnet_two_class_head_starts_at_the_imagenet_heads_scale():
    """torchvision scales its head's init by 1/sqrt(out_features), which for 2 classes is 22x ImageNet's."""
    imagenet_head = torchvision.models.efficientnet_b0(weights=None).classifier[-1].weight
    torch.manual_seed(0)
    ours = get_card("efficientnet_b0").create().build_network({}).classifier[-1]
    assert ours.weight.shape == (2, 1280)
    assert float(ours.weight.abs().max()) == pytest.approx(float(imagenet_head.abs().max()), rel=0.01)  # +-1/sqrt(1000)
    assert float(ours.weight.std()) == pytest.approx(1 / np.sqrt(3 * 1000), rel=0.05)  # the std of U(+-1/sqrt(1000))
    features = torch.ones(1, 1280)  # the logits of unit features stay near 0, not in the tens
    assert float(ours(features).abs().max()) < 3.0


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_smoke_fit_gives_probabilities_class_specific_maps_and_round_trips(fitted, make_image_set, name, tmp_path):
    method = fitted[name]
    test = _image_set(make_image_set, name, 4, 2)
    size = test.images.shape[1]
    probs = method.predict_proba(test.images)
    assert probs.shape == (4, 2) and (probs >= 0).all() and np.abs(probs.sum(axis=1) - 1).max() < 1e-9
    assert method.operating_threshold() is None
    for explainer in ("gradcam", "smoothgrad"):
        benign = method.explain(test.images, np.zeros(4, int), explainer)
        malignant = method.explain(test.images, np.ones(4, int), explainer)
        for maps in (benign, malignant):
            assert maps.shape == (4, size, size) and maps.dtype == np.float32 and maps.min() >= 0 and maps.max() <= 1
        assert max(benign.max(), malignant.max()) == 1 and np.abs(benign - malignant).max() > 0.1
    method.save(tmp_path)
    again = get_card(name).create()
    again.load(tmp_path)
    np.testing.assert_array_equal(again.predict_proba(test.images), probs)


def _imagenet_state(name: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    if name == "xception":
        return timm.create_model("legacy_xception").state_dict()
    if name == "inception_v3":
        return torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    return torchvision.models.efficientnet_b0(weights=None).state_dict()


@pytest.mark.parametrize("name", ["xception", "efficientnet_b0"])
def test_pretrained_weights_are_loaded_except_the_imagenet_head(tmp_path, make_image_set, monkeypatch, name):
    method = get_card(name).create()
    saved = _imagenet_state(name)
    torch.save(saved, tmp_path / f"{method.arch}.pth")
    seen = {}
    monkeypatch.setattr(module, "train_stage", lambda network, *a, **k: seen.update(method.weights_target(network).state_dict()))
    context = get_card(name).context("smoke", pretrained=True, weights_dir=tmp_path, progress=False)
    method.fit(_image_set(make_image_set, name, 14, 0), _image_set(make_image_set, name, 7, 1), context)
    new_head = [k for k in saved if k.startswith(method.new_head_prefixes)]
    assert new_head and all(seen[k].shape[0] == 2 for k in new_head)
    assert all(torch.equal(seen[k], saved[k]) for k in saved if k not in new_head)


def test_inception_trains_its_auxiliary_head_at_paper_size_and_deploys_without_it(tmp_path, make_image_set, monkeypatch):
    card = get_card("inception_v3")
    method = card.create()
    saved = _imagenet_state("inception_v3")
    torch.save(saved, tmp_path / "inception_v3.pth")
    seen = {}

    def one_step(network, optimizer, batches, batch_loss, *args, **kwargs):
        assert network.AuxLogits is not None and network.aux_logits
        seen["aux_loaded"] = torch.equal(network.AuxLogits.conv1.conv.weight, saved["AuxLogits.conv1.conv.weight"])
        seen["in_optimizer"] = any(p is network.AuxLogits.fc.weight for g in optimizer.param_groups for p in g["params"])
        batch = batch_to_device(next(iter(batches)), "cpu")
        network.train()
        torch.manual_seed(0)
        seen["loss"] = batch_loss(network, batch).item()
        torch.manual_seed(0)  # the same dropout draw: the main and auxiliary logits of the same pass
        outputs = network(batch["inputs"])
        cross_entropy = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 1.0]))
        seen["expected"] = (cross_entropy(outputs.logits, batch["target"]) + 0.4 * cross_entropy(outputs.aux_logits, batch["target"])).item()

    monkeypatch.setattr(module, "train_stage", one_step)
    assert INCEPTION_AUX_MIN_INPUT == card.input_size("paper") == 299
    context = card.context("paper", weights_dir=tmp_path, progress=False)
    context.settings.update(batch_size=2, num_workers=0)
    train = make_image_set(4, size=299, seed=0)
    train.labels[:] = [4, 5, 4, 5]  # two malignant, two benign: balanced, so the class weights are 1
    method.fit(train, make_image_set(2, size=299, seed=1), context)
    assert seen["aux_loaded"] and seen["in_optimizer"]
    assert seen["loss"] == pytest.approx(seen["expected"], rel=1e-5)
    network = method.nets[0]
    assert network.AuxLogits is None and not any(k.startswith("AuxLogits") for k in network.state_dict())


def test_inception_refuses_input_sizes_it_cannot_run_before_training(make_image_set, monkeypatch):
    monkeypatch.setattr(module, "train_stage", lambda *a, **k: pytest.fail("training started"))
    card = get_card("inception_v3")
    context = card.context("smoke", progress=False)
    context.settings["aux_logits"] = True
    with pytest.raises(BenchboxError, match="auxiliary classifier needs input_size >= 299"):
        card.create().fit(make_image_set(8, size=107), make_image_set(4, size=107, seed=1), context)
    context.settings.update(aux_logits=False, input_size=64)
    with pytest.raises(BenchboxError, match="below InceptionV3's minimum of 75 px"):
        card.create().validate(context)


# --- the paper's models and procedure (binary_cnn_xai.txt) -----------------------------------------

PAPER_MODELS = {"xception": 299, "inception_v3": 299, "efficientnet_b0": 224, "efficientnet_b0_128": 128}  # Sec. 9.3


def test_paper_input_sizes_are_the_papers_and_the_128_px_model_is_efficientnet_b0():
    assert {name: get_card(name).input_size("paper") for name in PAPER_MODELS} == PAPER_MODELS
    small, large = get_card("efficientnet_b0_128"), get_card("efficientnet_b0")
    assert small.load_class() is large.load_class()  # the same network and procedure, another input size
    assert {k: v for k, v in small.settings("paper").items() if k != "input_size"} == \
        {k: v for k, v in large.settings("paper").items() if k != "input_size"}  # fmt: skip
    assert parameter_counts(small) == (pytest.approx(4.01011), "at 128 px")
    method = small.create()
    method.build(small.settings("paper"))
    assert method.cam_target_layers(method.nets[0])[0] is method.nets[0].features[-1]
    with torch.no_grad():
        features = method.nets[0].features(torch.zeros(1, 3, 128, 128))
    assert features.shape == (1, 1280, 4, 4)  # Grad-CAM's grid at the paper's 128 px


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_paper_profile_is_adam_and_weighted_cross_entropy_stopped_on_validation_accuracy(name, make_image_set, monkeypatch):
    """Sec. 2.7.3: "Adam optimizer with cross-entropy loss"; early stopping on a monitored metric (accuracy, the first listed)."""
    card = get_card(name)
    size = 107 if name == "inception_v3" else 48
    seen = {}
    monkeypatch.setattr(module, "train_stage", lambda network, optimizer, batches, batch_loss, validate, stage, *a, **k: seen.update(
        network=network, optimizer=optimizer, batches=batches, batch_loss=batch_loss, validate=validate, stage=stage))
    context = card.context("paper", pretrained=False, progress=False)
    context.settings.update(input_size=size, num_workers=0, aux_logits=False)
    train, val = make_image_set(20, size=size, seed=0), make_image_set(10, size=size, seed=1)
    card.create().fit(train, val, context)
    optimizer, stage = seen["optimizer"], seen["stage"]
    assert type(optimizer) is torch.optim.Adam and optimizer.param_groups[0]["lr"] == 1e-4 and optimizer.param_groups[0]["weight_decay"] == 0
    assert (stage.epochs, stage.patience, stage.scheduler) == (30, 5, "none")
    assert card.settings("paper")["oversample"] == {"kind": "duplicate", "fraction": 0.5}
    network = seen["network"].eval()
    with torch.no_grad():
        # the arg-max of the probabilities, as validation takes it: an untrained head's logits can differ by
        # ~1e-14, which the softmax rounds to a tie
        predicted = network(model_inputs(val.images, "cpu")).softmax(1).argmax(1).numpy()
    assert seen["validate"](network) == pytest.approx(float((predicted == val.malignant).mean()))
    # the loss: cross-entropy weighted by the balanced weights of one oversampled epoch
    batch = batch_to_device(next(iter(seen["batches"])), "cpu")
    torch.manual_seed(0)
    got = seen["batch_loss"](network, batch).item()
    weights = torch.tensor(epoch_class_weights(train.malignant, card.settings("paper")), dtype=torch.float32)
    torch.manual_seed(0)
    logits = network(batch["inputs"])
    manual = -(weights[batch["target"]] * torch.log_softmax(logits, 1).gather(1, batch["target"][:, None])[:, 0]).sum() / weights[batch["target"]].sum()
    assert got == pytest.approx(manual.item(), rel=1e-5)
