from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchbox.efficiency import measure_efficiency, parameter_count, predict_flops

SIZE = 8


def tiny_network() -> nn.Module:
    # conv: 4*3*3*3 + 4 = 112 parameters; linear: 4*2 + 2 = 10.
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


# Hand count, 2 FLOPs per multiply-add: the conv does 4 x 3 x 3 x 3 multiply-adds at each of
# 8 x 8 output positions, the linear layer 4 x 2; pooling, bias and softmax are not counted.
ONE_NETWORK_FLOPS = 2 * (4 * 3 * 3 * 3 * SIZE * SIZE) + 2 * (4 * 2)  # 13,840


class TinyMethod:
    """predict_proba averages `n_models` networks over `flips` test-time flips, like an ensemble."""

    def __init__(self, n_models: int = 1, flips: int = 1, share: bool = False, scratch_floats: int = 0) -> None:
        torch.manual_seed(0)
        self.models = [tiny_network()] * n_models if share else [tiny_network() for _ in range(n_models)]
        self.flips = flips
        self.scratch_floats = scratch_floats

    def networks(self) -> list[nn.Module]:
        return self.models

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        if self.scratch_floats:  # planted working memory, proportional to the batch
            scratch = np.ones((len(images), self.scratch_floats))
            del scratch
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            views = [x, x.flip(-1)][: self.flips]
            probs = torch.stack([m(v).softmax(1) for m in self.models for v in views]).mean(0)
        return probs.numpy()


def test_flops_match_a_hand_count():
    assert predict_flops(TinyMethod(), np.zeros((1, SIZE, SIZE, 3), np.uint8)) == ONE_NETWORK_FLOPS


def test_an_ensemble_with_tta_is_counted_whole():
    method = TinyMethod(n_models=3, flips=2)
    assert predict_flops(method, np.zeros((1, SIZE, SIZE, 3), np.uint8)) == 6 * ONE_NETWORK_FLOPS


def test_parameters_are_counted_once_per_distinct_tensor():
    assert parameter_count(TinyMethod(n_models=3).networks()) == 3 * 122
    assert parameter_count(TinyMethod(n_models=3, share=True).networks()) == 122


def test_measure_efficiency_reports_every_field():
    result = measure_efficiency(TinyMethod(n_models=2, flips=2), SIZE, warmup=1, repeats=5, throughput_batch=4)
    assert result["params_m"] == 2 * 122 / 1e6
    assert result["gflops"] == 4 * ONE_NETWORK_FLOPS / 1e9
    assert 0 < result["ms_p50"] <= result["ms_p95"]
    assert result["images_per_s"] > 0
    assert result["device"].startswith("cpu")
    assert result["torch_threads"] == torch.get_num_threads()
    assert result["input_size"] == "8x8" and result["peak_memory_batch"] == 4
    assert all(isinstance(v, (float, str)) for v in result.values())


def test_peak_memory_sees_a_planted_allocation():
    # 32 images x 400,000 float64 = 102.4 MB of scratch inside one batch-32 call (97.7 MiB).
    result = measure_efficiency(TinyMethod(scratch_floats=400_000), SIZE, warmup=1, repeats=2, throughput_repeats=1)
    assert "RSS" in result["peak_memory_kind"]
    assert 90 <= result["peak_memory_mib"] < 200
