"""Seeding and device choice: the two things every fit does first."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from ..errors import BenchboxError


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) and ask torch for deterministic kernels.

    `warn_only=True`: an operation without a deterministic kernel warns instead of failing,
    because forbidding it would make some models untrainable on GPU; cuDNN autotuning is off
    because it picks kernels by timing, which differs from run to run.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_device(request: str = "auto", num_threads: int | None = None) -> str:
    """Turn "auto" into "cuda" when a GPU is visible, else "cpu"; on CPU, set torch's thread count.

    torch's default thread count is the machine's core count, which oversubscribes a CPU
    shared through an affinity mask or a container quota; `num_threads` defaults to the CPUs
    this process may use.
    """
    if request == "auto":
        request = "cuda" if torch.cuda.is_available() else "cpu"
    if request.startswith("cuda") and not torch.cuda.is_available():
        raise BenchboxError(f"device {request!r} was asked for but torch sees no CUDA GPU; use --device cpu or auto.")
    if request == "cpu":
        torch.set_num_threads(num_threads or available_cpus())
    return request
