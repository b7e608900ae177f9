"""The run configuration, and its validation before anything is trained."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..data.ita import CORRECTIONS
from ..errors import BenchboxError

FAITHFULNESS = ("none", "fast", "road")
EXECUTORS = ("local", "ray")
EXECUTION = ("executor", "ray_address", "ray_retries")  # RunConfig fields that say where jobs run
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
MAX_SEED = 2**32 - 1  # numpy's seeds are unsigned 32-bit

# How much evaluation each profile does; training sizes live in the method cards. Smoke exists to
# exercise every code path in CI within minutes, so it scores a seeded subset of whole lesion
# groups of val and test; the other profiles score every image. Quick explains 32 images with 10
# deletion steps to keep the default run within its CPU budget; paper explains 64 with 20 steps.
# The model-parameter randomisation check costs 5 explanation passes per explainer, so it runs on
# the first `randomisation_n` explained images (None: all).
EVALUATION = {
    "smoke": {"explain_n": 8, "max_eval_images": 150, "deletion_steps": 8, "latency_repeats": 5, "throughput_repeats": 2,
              "randomisation_n": 4},
    "quick": {"explain_n": 32, "max_eval_images": None, "deletion_steps": 10, "latency_repeats": 20, "throughput_repeats": 3,
              "randomisation_n": 16},
    "paper": {"explain_n": 64, "max_eval_images": None, "deletion_steps": 20, "latency_repeats": 30, "throughput_repeats": 5,
              "randomisation_n": None},
}


# Training seeds when --seeds is not given. The boards' intervals include training noise only with
# several seeds (metrics/README.md), so the default run trains three; smoke exists to exercise code.
DEFAULT_SEEDS = {"smoke": [0], "quick": [0, 1, 2], "paper": [0, 1, 2]}


@dataclass
class RunConfig:
    methods: list[str]
    data: str = "synthderm"
    split: str | None = None  # a split manifest; None = the dataset's canonical/fixed split
    profile: str = "quick"
    seeds: list[int] | None = None  # None = the profile's DEFAULT_SEEDS
    out: str | None = None  # the run folder; None = reports/<run id>
    device: str = "auto"
    explain_n: int | None = None  # None = the profile's default (EVALUATION)
    faithfulness: str = "fast"
    pretrained: bool | None = None  # None = the profile's default (paper: yes)
    weights_dir: str | None = None
    only_present: bool = False
    on_bad_image: str = "fail"
    ita_correction: str = "source"  # colour correction before skin tone is measured (benchbox.data.ita)
    # a split whose lesions cross train/val/test is refused unless asked for, to measure leakage
    # (benchbox audit --measure); such a run is stamped LEAKY in run.json and on every board
    allow_leaky_split: bool = False
    # where the jobs run, not what they compute: left out of the run's identity, like out and device
    executor: str = "local"  # local | ray (runner/ray_executor.py)
    ray_address: str | None = None  # None = ray.init's own choice: $RAY_ADDRESS, a cluster on this machine, else a new one
    ray_retries: int = 2  # times a job whose Ray worker died is run again before it is recorded as failed

    def __post_init__(self):
        if self.seeds is None:
            self.seeds = list(DEFAULT_SEEDS.get(self.profile, [0]))
        check_seeds(self.seeds)
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise BenchboxError(f"--device must be auto, cpu, cuda or cuda:N, not {self.device!r}")
        if self.ita_correction not in CORRECTIONS:
            raise BenchboxError(f"--ita-correction must be one of {', '.join(CORRECTIONS)}, not {self.ita_correction!r}")
        if self.executor not in EXECUTORS:
            raise BenchboxError(f"--executor must be one of {EXECUTORS}, not {self.executor!r}")
        if isinstance(self.ray_retries, bool) or not isinstance(self.ray_retries, int) or self.ray_retries < 0:
            raise BenchboxError(f"--ray-retries must be an integer of 0 or more, not {self.ray_retries!r}")
        if self.executor != "ray" and self.ray_address:
            raise BenchboxError("--ray-address names a Ray cluster to run on; add --executor ray")

    def identity(self) -> dict:
        """What makes two runs the same run (the output folder and device are not part of it)."""
        fields = asdict(self)
        for key in ("out", "device", *EXECUTION):
            fields.pop(key)
        if not fields["allow_leaky_split"]:
            fields.pop("allow_leaky_split")  # so that the ids of runs from before the option stay
        return fields

    def run_id(self) -> str:
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]
        data = self.data.split(":")[0]
        return f"{data}-{self.profile}-{digest}"

    def evaluation(self) -> dict:
        """This profile's evaluation settings, with --explain-n applied."""
        settings = dict(EVALUATION.get(self.profile, EVALUATION["quick"]))
        if self.explain_n is not None:
            settings["explain_n"] = self.explain_n
        return settings

    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("reports") / self.run_id()


def check_seeds(seeds: list[int]) -> None:
    """Seeds are checked before the run folder exists, not inside the first fit."""
    if not seeds:
        raise BenchboxError("--seeds needs at least one seed, e.g. --seeds 0,1,2")
    bad = [seed for seed in seeds if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED]
    if bad:
        raise BenchboxError(f"--seeds must be integers from 0 to {MAX_SEED}; {bad} are not")
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise BenchboxError(f"--seeds lists {repeated} more than once; each seed is one training run")
