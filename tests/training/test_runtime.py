from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from benchbox.errors import BenchboxError
from benchbox.training.runtime import resolve_device, seed_everything


def test_seed_everything_fixes_every_generator():
    draws = []
    for _ in range(2):
        seed_everything(11)
        draws.append((random.random(), np.random.rand(), torch.rand(1).item()))
    assert draws[0] == draws[1]
    assert torch.are_deterministic_algorithms_enabled()


def test_resolve_device_sets_cpu_threads_and_refuses_a_missing_gpu():
    before = torch.get_num_threads()
    try:
        assert resolve_device("cpu", num_threads=1) == "cpu" and torch.get_num_threads() == 1
        expected = "cuda" if torch.cuda.is_available() else "cpu"
        assert resolve_device("auto", num_threads=1) == expected
    finally:
        torch.set_num_threads(before)
    if not torch.cuda.is_available():
        with pytest.raises(BenchboxError, match="torch sees no CUDA GPU"):
            resolve_device("cuda")
