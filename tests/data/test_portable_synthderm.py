"""synthderm writes the same bytes whatever SIMD kernels numpy, oneDNN and libjpeg-turbo pick.

Each case is generated in separate processes: numpy's default dispatch (AVX-512 on such a
machine), the AVX2-era feature list (which numpy >= 2.4, knowing these names no longer, reads as
its baseline: SSE4.2, no AVX), and numpy 2.4's own AVX2 level X86_V3; the latter two also cap
oneDNN at AVX2 and switch libjpeg-turbo's SIMD off. Before portable_math, 3 of the 89 images of
the first case differed between default and AVX2-list dispatch.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

AVX2_FEATURES = "SSE SSE2 SSE3 SSSE3 SSE41 POPCNT SSE42 AVX F16C FMA3 AVX2"
NO_AVX512 = {"DNNL_MAX_CPU_ISA": "AVX2", "JSIMD_FORCENONE": "1"}
DISPATCH = {
    "default": {},
    "avx2-list": {"NPY_ENABLE_CPU_FEATURES": AVX2_FEATURES, **NO_AVX512},
    "x86-v3": {"NPY_ENABLE_CPU_FEATURES": "X86_V3", **NO_AVX512},
}
CASES = {"60-lesions-seed1": ["--n-lesions", "60", "--seed", "1"], "200-lesions-seed2": ["--n-lesions", "200", "--seed", "2"]}
CLI = "import sys; from benchbox.cli import main; sys.exit(main())"


def benchbox(args: list[str], env: dict[str, str], cache: Path) -> str:
    environment = {**os.environ, **env, "BENCHBOX_CACHE": str(cache)}
    for name in ("NPY_ENABLE_CPU_FEATURES", "NPY_DISABLE_CPU_FEATURES", "DNNL_MAX_CPU_ISA", "JSIMD_FORCENONE"):
        if name not in env:
            environment.pop(name, None)
    done = subprocess.run([sys.executable, "-c", CLI, *args], env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[tuple[str, str], tuple[dict[str, str], str]]:
    """(case, dispatch) -> (file digests, `benchbox data info` output without its first line)."""
    results = {}
    for case, args in CASES.items():
        for dispatch, env in DISPATCH.items():
            work = tmp_path_factory.mktemp(f"{case}-{dispatch}")
            benchbox(["data", "synth", "--out", str(work / "data"), *args], env, work / "cache")
            info = benchbox(["data", "info", f"synthderm:{work / 'data'}"], env, work / "cache")
            results[case, dispatch] = tree_digest(work / "data"), info.split("\n", 1)[1]
    return results


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dispatch", [d for d in DISPATCH if d != "default"])
def test_files_and_dataset_hash_do_not_depend_on_cpu_dispatch(generated, case, dispatch):
    files, info = generated[case, "default"]
    other_files, other_info = generated[case, dispatch]
    assert len(files) > 2 * 80 and any(name.endswith(".jpg") for name in files)
    differing = sorted(name for name in files if files[name] != other_files.get(name))
    assert differing == [] and files.keys() == other_files.keys()
    hash_line = next(line for line in info.splitlines() if line.startswith("hash: "))
    assert hash_line in other_info.splitlines()
    assert info == other_info  # counts per ITA category too: ita.py is portable as well
