from __future__ import annotations

import numpy as np
import torch

from benchbox.training.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augmentation,
    ImageSetDataset,
    model_inputs,
    train_loader,
)


def test_model_inputs_are_channels_first_and_imagenet_normalised():
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
    inputs = model_inputs(images, "cpu")
    expected = (images.transpose(0, 3, 1, 2) / 255 - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]
    assert inputs.shape == (2, 3, 5, 6) and inputs.dtype == torch.float32
    np.testing.assert_allclose(inputs.numpy(), expected, atol=1e-6)


def test_geometric_augmentation_moves_image_and_mask_together_and_keeps_pixels():
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    mask = image[0] > 128
    augment = Augmentation(colour_jitter=0.0)
    outcomes = set()
    for _ in range(40):
        out, out_mask = augment(image, mask)
        assert torch.equal(out_mask, out[0] > 128)
        assert torch.equal(out.flatten(1).sort(dim=1).values, image.flatten(1).sort(dim=1).values)
        outcomes.add(out.numpy().tobytes())
    assert len(outcomes) == 8  # the 8 flips/rotations of a square (dihedral group)


def test_colour_jitter_stays_small():
    torch.manual_seed(0)
    image = torch.full((3, 8, 8), 100, dtype=torch.uint8)
    image[0] = 150
    out, _ = Augmentation(flips=False, rot90=False, colour_jitter=0.1)(image)
    assert (out.int() - image.int()).abs().max() <= 30 and not torch.equal(out, image)


def test_loader_is_seeded_oversamples_by_index_and_drops_a_short_last_batch():
    images = np.zeros((10, 4, 4, 3), np.uint8)
    dataset = ImageSetDataset(images, np.arange(10) % 2, augmentation=None)
    indices = np.r_[np.arange(10), [1, 3, 3]]
    order = [b["index"].tolist() for b in train_loader(dataset, 4, seed=7, indices=indices)]
    again = [b["index"].tolist() for b in train_loader(dataset, 4, seed=7, indices=indices)]
    assert order == again and [len(b) for b in order] == [4, 4, 4]  # 13 indices: last one dropped
    assert len(sum(order, [])) == 12 and set(sum(order, [])) <= set(indices.tolist())
    everything = [b["index"].tolist() for b in train_loader(dataset, 20, seed=7, indices=indices)]
    assert sorted(everything[0]) == sorted(indices.tolist())  # one batch: nothing dropped, repeats kept
