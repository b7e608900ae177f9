"""What a deployed predictor costs: parameters, FLOPs, latency, throughput and peak memory.

Everything is measured through the method's own `predict_proba` on uint8 images, so an
ensemble with test-time augmentation is counted whole, preprocessing included.
"""

from __future__ import annotations

import ctypes
import gc
import platform
import re
import resource
import time
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode


def parameter_count(networks: list[torch.nn.Module]) -> int:
    """Distinct parameters over all networks (a tensor shared by two networks counts once)."""
    unique = {id(p): p for network in networks for p in network.parameters()}
    return sum(p.numel() for p in unique.values())


def predict_flops(method: Any, images: np.ndarray) -> int:
    """Floating-point operations (2 per multiply-add) torch executes in one `predict_proba` call."""
    counter = FlopCounterMode(display=False)
    with counter:
        method.predict_proba(images)
    return counter.get_total_flops()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read(), re.MULTILINE)
    except OSError:
        found = None
    return found.group(1).strip() if found else platform.machine()


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE).group(1))


def _return_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc), so memory reused from earlier calls shows as new."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the delta may then miss reused memory
        pass


def _peak_memory_mib(method: Any, images: np.ndarray, device: torch.device) -> tuple[float, str]:
    """Peak memory one `predict_proba(images)` call adds on top of what was held before it.

    On CPU this is the rise of the process's resident set during the call, after freed heap
    pages are handed back to the OS; on CUDA the rise of torch's allocated device memory.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        method.predict_proba(images)
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20, "cuda max_memory_allocated delta"
    _return_free_heap()
    try:  # Linux: writing 5 to clear_refs resets the peak-RSS counter (VmHWM) to the current RSS.
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:  # the lifetime peak instead: only a call that exceeds every earlier peak shows up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        method.predict_proba(images)
        rise_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        return rise_mib, "process lifetime peak RSS delta (ru_maxrss)"
    before = _status_kib("VmRSS")
    method.predict_proba(images)
    return (_status_kib("VmHWM") - before) / 1024, "process peak RSS delta (/proc VmHWM reset)"


def _timings_s(method: Any, images: np.ndarray, warmup: int, repeats: int) -> np.ndarray:
    for _ in range(warmup):
        method.predict_proba(images)
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        method.predict_proba(images)  # returns numpy, so GPU work has finished when it returns
        times[i] = time.perf_counter() - start
    return times


def measure_efficiency(
    method: Any,
    input_size: int | tuple[int, int],
    warmup: int = 5,
    repeats: int = 30,
    throughput_batch: int = 32,
    throughput_repeats: int = 5,
    seed: int = 0,
) -> dict[str, float | str]:
    """Cost of `method.predict_proba` on random uint8 images of `input_size` (side or (H, W)).

    Latency is ms/image at batch 1 (median and 95th percentile of `repeats` calls after
    `warmup` calls); throughput is images/s at `throughput_batch` (median of
    `throughput_repeats` calls after one warm-up); FLOPs are for one image. The device is
    that of the first parameter of `method.networks()`.
    """
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    rng = np.random.default_rng(seed)
    one = rng.integers(0, 256, size=(1, height, width, 3), dtype=np.uint8)
    batch = rng.integers(0, 256, size=(throughput_batch, height, width, 3), dtype=np.uint8)
    networks = method.networks()
    parameters = [p for network in networks for p in network.parameters()]
    device = parameters[0].device if parameters else torch.device("cpu")
    flops = predict_flops(method, one)
    latency_ms = _timings_s(method, one, warmup, repeats) * 1e3
    batch_s = _timings_s(method, batch, 1, throughput_repeats)
    peak_mib, peak_kind = _peak_memory_mib(method, batch, device)
    return {
        "params_m": parameter_count(networks) / 1e6,
        "gflops": flops / 1e9,
        "ms_p50": float(np.median(latency_ms)),
        "ms_p95": float(np.percentile(latency_ms, 95)),
        "images_per_s": float(throughput_batch / np.median(batch_s)),
        "peak_memory_mib": float(peak_mib),
        "peak_memory_kind": peak_kind,
        "peak_memory_batch": float(throughput_batch),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({_cpu_name()})",
        "torch_threads": float(torch.get_num_threads()),
        "input_size": f"{height}x{width}",
    }
