"""`benchbox run --executor ray` on a real two-node Ray cluster on this machine: the run folder is the
local run's (same files, same metrics), a job whose worker is killed is retried a bounded number of
times and then recorded as failed while the others finish, Ctrl-C cancels and a rerun resumes.

The nodes' workers get another cache than the driver (`BENCHBOX_CACHE`), so a checkpoint in the
driver's cache after a Ray run came back through Ray. The tiny methods of runner_tiny_methods keep
every fit under a second; the workers import them (and DoomedLinear here) through PYTHONPATH, as a
cluster's nodes must have a plugin's code installed.
"""

from __future__ import annotations

import _thread
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from benchbox import cli
from benchbox.registry import card_from_dict, method_cards, read_card, register_method, METHOD_CLASSES
from benchbox.runner import ray_executor
from benchbox.runner.config import RunConfig
from benchbox.runner.run import execute

import torch
from runner_tiny_methods import TinyBinary, TinyLinear

HERE = Path(__file__).resolve().parent
CONTROL_ENV = "BENCHBOX_TEST_RAY_CONTROL"  # a folder: `doom` in it makes DoomedLinear wait to be killed
# Measured, so never equal between two runs (any executor): the latency/throughput/memory entries.
MEASURED = ("latency.ms_p50", "latency.ms_p95", "throughput.images_per_s", "peak_memory_mb")
# Files that record when and where a job ran rather than what it computed: done.json (timings, and the
# sha256 of metrics.json and efficiency.json, which hold the measurements) and efficiency.json.
TIMING_FILES = ("done.json", "efficiency.json")


class SeededLinear(TinyLinear):
    """TinyLinear whose initial weights come from the seed: the tiny methods draw them in __init__ from
    whatever state the process's torch generator is in, so the same job in another process (a local run
    after other jobs, a Ray worker) would start from other weights."""

    name = "seeded_linear"

    def fit(self, train, val, ctx):
        torch.manual_seed(ctx.seed)
        self.__init__()
        super().fit(train, val, ctx)


class SeededBinary(TinyBinary):
    name = "seeded_binary"

    def fit(self, train, val, ctx):
        torch.manual_seed(ctx.seed)
        self.__init__()
        super().fit(train, val, ctx)


class DoomedLinear(SeededLinear):
    """SeededLinear that, while the control folder holds `doom`, writes its pid and waits to be killed."""

    name = "doomed_linear"

    def fit(self, train, val, ctx):
        control = Path(os.environ.get(CONTROL_ENV, "/nonexistent"))
        if (control / "doom").exists():
            (control / f"pid-{os.getpid()}-{time.monotonic_ns()}").write_text(str(os.getpid()))
            time.sleep(120)
        super().fit(train, val, ctx)


for _cls in (SeededLinear, SeededBinary, DoomedLinear):
    if _cls.name not in METHOD_CLASSES:
        register_method(_cls)

pytestmark = pytest.mark.usefixtures("without_run_report")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A head and a worker node (1 CPU each) whose workers import the test methods and use their own cache."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths have a length limit
    (temp / "ray").mkdir()
    control = tmp_path_factory.mktemp("control")
    node_env = {"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                "BENCHBOX_CACHE": str(temp / "worker-cache"), CONTROL_ENV: str(control),
                "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    cluster = None
    with pytest.MonkeyPatch.context() as session:
        session.setenv("RAY_TMPDIR", str(temp))  # Ray's address file and sessions: here, never /tmp/ray
        with pytest.MonkeyPatch.context() as patch:  # the nodes (and their workers) inherit this environment
            for key, value in node_env.items():
                patch.setenv(key, value)
            try:
                cluster = Cluster(initialize_head=True, head_node_args={
                    "num_cpus": 1, "temp_dir": str(temp / "ray"), "include_dashboard": False})
                cluster.add_node(num_cpus=1)
                cluster.wait_for_nodes()
            except BaseException:
                if cluster is not None:
                    cluster.shutdown()
                shutil.rmtree(temp, ignore_errors=True)
                raise
        try:
            yield {"address": cluster.address, "control": control, "worker_cache": temp / "worker-cache"}
        finally:
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


def _config(data: Path, out: Path, methods, seeds, **extra) -> RunConfig:
    return RunConfig(methods=list(methods), data=f"synthderm:{data}", profile="smoke", seeds=list(seeds),
                     out=str(out), explain_n=8, device="cpu", **extra)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_a_ray_run_on_two_nodes_makes_the_local_run_folder(ray_cluster, tiny_synthderm, tmp_path, monkeypatch, capsys):
    methods, seeds = ("seeded_linear", "seeded_binary"), (0, 1)
    ray_cache, local_cache = tmp_path / "ray-driver-cache", tmp_path / "local-cache"
    monkeypatch.setenv("BENCHBOX_CACHE", str(ray_cache))  # each run trains: no checkpoint of the other is found
    ray_run = _config(tiny_synthderm, tmp_path / "ray", methods, seeds, executor="ray",
                      ray_address=ray_cluster["address"])
    assert execute(ray_run, progress=True) == 0
    printed = capsys.readouterr()
    monkeypatch.setenv("BENCHBOX_CACHE", str(local_cache))
    # a Ray worker runs torch with its card's CPUs (1); the local run must too, since float sums over
    # other thread counts differ in the last bits, and 30 Adam epochs can grow that into other weights
    from benchbox.training import runtime
    monkeypatch.setattr(runtime, "available_cpus", lambda: 1)
    assert execute(_config(tiny_synthderm, tmp_path / "local", methods, seeds), progress=False) == 0

    ray_dir, local_dir = tmp_path / "ray", tmp_path / "local"
    ray_files, local_files = _files(ray_dir), _files(local_dir)
    assert set(ray_files) == set(local_files)
    jobs = [f"{method}/seed{seed}" for method in methods for seed in seeds]
    assert {f"{job}/{name}" for job in jobs for name in ("job.json", "predictions.csv", "metrics.json", "done.json",
                                                          "explanations.npz", "xai.json")} <= set(ray_files)
    varying = {"run.json", "run.log"} | {f"{job}/{name}" for job in jobs for name in (*TIMING_FILES, "metrics.json")}
    varying |= {f"{method}/metrics.json" for method in methods}  # pooled seeds: the measured entries again
    differing = sorted(name for name in ray_files if ray_files[name] != local_files[name])
    assert set(differing) <= varying, differing
    for name in sorted(n for n in ray_files if n.endswith("metrics.json")):  # every value exactly, but measurements
        ray_metrics, local_metrics = json.loads(ray_files[name]), json.loads(local_files[name])
        for key in MEASURED:
            assert key in ray_metrics["metrics"], (name, key)
            ray_metrics["metrics"].pop(key), local_metrics["metrics"].pop(key)
        assert ray_metrics == local_metrics, name
    assert json.loads(ray_files["comparisons.json"]) and ray_files["comparisons.json"] == local_files["comparisons.json"]

    record = json.loads(ray_files["run.json"])
    assert len({record["jobs"][job]["ray"]["node"] for job in jobs}) == 2 and all(  # both nodes ran jobs
        record["jobs"][job]["status"] == "done" and record["jobs"][job]["ray"]["attempts"] == 1 for job in jobs)
    done = json.loads(ray_files["seeded_linear/seed0/done.json"])
    assert done["reused_checkpoint"] is None  # trained on a worker, then
    for job in jobs:  # the checkpoint came back into the driver's cache, which no worker writes
        method, seed = job.split("/seed")
        folders = list((ray_cache / "checkpoints" / method).glob("*/complete.json"))
        assert len(folders) == 2 and json.loads(folders[0].read_text())["method"] == method
    assert len(list((ray_cluster["worker_cache"] / "checkpoints").glob("*/*/complete.json"))) == 4
    out = printed.out + printed.err
    for job in jobs:
        assert f"{job}: started on " in out and f"{job}: done on " in out
    assert "jobs: 100%" in out  # the overall bar


def _kill_every_attempt(control: Path, killed: list[int], stop: threading.Event) -> None:
    while not stop.is_set():
        for path in control.glob("pid-*"):
            pid = int(path.read_text())
            if pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.1)


def test_a_killed_worker_is_retried_then_recorded_and_ctrl_c_cancels_and_a_rerun_resumes(
        ray_cluster, tiny_synthderm, tmp_path, capsys):
    control, out = ray_cluster["control"], tmp_path / "run"
    (control / "doom").write_text("")
    config = _config(tiny_synthderm, out, ("tiny_linear", "doomed_linear"), (0,), executor="ray",
                     ray_address=ray_cluster["address"], ray_retries=1)
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_every_attempt, args=(control, killed, stop), daemon=True)
    killer.start()
    try:
        assert execute(config, progress=False) == 1  # a job failed: exit code 1 (benchbox/errors.py)
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 2  # the first attempt and the one retry, no more
    record = json.loads((out / "run.json").read_text())
    failed = record["jobs"]["doomed_linear/seed0"]
    assert failed["status"] == "failed" and "after 2 attempt(s)" in failed["error"], failed
    assert "worker" in failed["error"].lower() and failed["ray"]["attempts"] == 2
    assert record["jobs"]["tiny_linear/seed0"]["status"] == "done"
    assert (out / "tiny_linear" / "seed0" / "done.json").exists() and (out / "doomed_linear" / "seed0" / "error.txt").exists()
    printed = capsys.readouterr().out
    assert "doomed_linear/seed0: FAILED" in printed and "doomed_linear/seed0: done" not in printed

    # Ctrl-C while the doomed job waits on its node: the task is cancelled (its worker ends), the finished job stays
    for path in control.glob("pid-*"):
        path.unlink()

    def interrupt_once_started():
        while not list(control.glob("pid-*")):
            time.sleep(0.1)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_once_started, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        execute(config, progress=False)
    pid = int(next(control.glob("pid-*")).read_text())
    for _ in range(300):
        if not _alive(pid):
            break
        time.sleep(0.1)
    assert not _alive(pid), "the cancelled task's worker still runs"
    assert "cancelled 1 job(s) still on the cluster (doomed_linear/seed0)" in capsys.readouterr().out
    assert (out / "tiny_linear" / "seed0" / "done.json").exists()

    (control / "doom").unlink()  # the same command again: the finished job is skipped, the other one runs
    sealed = (out / "tiny_linear" / "seed0" / "done.json").read_bytes()
    assert execute(config, progress=False) == 0
    record = json.loads((out / "run.json").read_text())
    assert "ray" not in record["jobs"]["tiny_linear/seed0"]  # no task was sent for it
    assert (out / "tiny_linear" / "seed0" / "done.json").read_bytes() == sealed
    assert record["jobs"]["doomed_linear/seed0"]["ray"]["attempts"] == 1
    assert record["jobs"]["doomed_linear/seed0"]["status"] == "done"
    assert not (out / "doomed_linear" / "seed0" / "error.txt").exists()
    assert json.loads((out / "doomed_linear" / "seed0" / "metrics.json").read_text())["metrics"]["accuracy"]["value"] > 0


def _alive(pid: int) -> bool:
    """Whether pid runs (a zombie, killed but not yet reaped by its raylet, does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_without_ray_the_executor_says_how_to_install_it(tiny_synthderm, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is not installed
    code = cli.main(["run", "--methods", "tiny_linear", "--data", f"synthderm:{tiny_synthderm}", "--profile", "smoke",
                     "--executor", "ray", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "pip install 'benchbox[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before the run folder or any data was touched


def test_a_paper_job_asks_for_one_gpu_and_a_smoke_job_for_cpus():
    card = method_cards(entry_points=False).get("msfa")
    paper = ray_executor.task_options(ray_executor.job_resources(card, "paper"), retries=2)
    assert paper == {"num_cpus": 4, "num_gpus": 1, "memory": 16 * 2**30, "max_retries": 2, "retry_exceptions": False}
    smoke = ray_executor.task_options(ray_executor.job_resources(card, "smoke"), retries=0)
    assert smoke == {"num_cpus": 1, "num_gpus": 0, "max_retries": 0, "retry_exceptions": False}
    classless = method_cards(entry_points=False).get("seeded_linear")  # a class card without resources: 1 CPU
    assert ray_executor.task_options(ray_executor.job_resources(classless, "paper"), 1)["num_cpus"] == 1


def _card_text(extra: str) -> str:
    return ("name: m\nimport_path: pkg.mod:Cls\ntask: binary\ninclude: _base.yaml\n"
            "profiles: {smoke: {input_size: 32}, quick: {input_size: 32}, paper: {input_size: 64}}\n" + extra)


def test_resources_merge_over_the_included_base_and_stay_out_of_the_settings(tmp_path):
    (tmp_path / "_base.yaml").write_text("defaults: {lr: 0.1}\nresources: {paper: {gpus: 1, cpus: 4}, quick: {cpus: 2}}\n")
    (tmp_path / "m.yaml").write_text(_card_text("resources: {paper: {cpus: 8, memory_gb: 2.5}}\n"))
    card = read_card(tmp_path / "m.yaml")
    assert card.job_resources("paper") == {"gpus": 1, "cpus": 8, "memory_gb": 2.5}
    assert card.job_resources("quick") == {"cpus": 2} and card.job_resources("smoke") == {}
    (tmp_path / "plain.yaml").write_text(_card_text(""))
    plain = read_card(tmp_path / "plain.yaml")
    assert plain.settings("paper") == card.settings("paper") == {"lr": 0.1, "input_size": 64}
    (tmp_path / "bad.yaml").write_text(_card_text("resources: {paper: {gpu: 1}}\n"))
    with pytest.raises(Exception, match=r"bad.yaml: resources of profile 'paper': \{'gpu': 1\} is not allowed"):
        read_card(tmp_path / "bad.yaml")
    with pytest.raises(Exception, match="resources must map profiles"):
        card_from_dict({"name": "m", "import_path": "a:B", "task": "binary", "resources": {"huge": {}},
                        "profiles": {p: {"input_size": 8} for p in ("smoke", "quick", "paper")}}, "inline")


def test_the_mirrored_job_folder_is_sealed_last_and_drops_what_the_job_removed(tmp_path):
    job = tmp_path / "job"
    (job / "work").mkdir(parents=True)
    (job / "done.json").write_text("{}")
    (job / "xai.json").write_text("stale")
    (job / "work" / "state.pt").write_bytes(b"old")
    written = []
    original = ray_executor._write_bytes
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ray_executor, "_write_bytes", lambda path, data: (written.append(path.name), original(path, data)))
        ray_executor.mirror_job_folder(job, {"done.json": b"{\"job_key\": 1}", "metrics.json": b"{}", "job.json": b"{}"})
    assert written[-1] == "done.json" and sorted(written) == ["done.json", "job.json", "metrics.json"]
    assert ray_executor.folder_files(job) == {"done.json": b"{\"job_key\": 1}", "job.json": b"{}", "metrics.json": b"{}"}
    assert np.array_equal(sorted(p.name for p in job.iterdir()), ["done.json", "job.json", "metrics.json", "work"])


def test_an_address_nothing_answers_at_is_refused_before_the_run_starts(tiny_synthderm, tmp_path, capsys):
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = cli.main(["run", "--methods", "tiny_linear", "--data", f"synthderm:{tiny_synthderm}", "--profile", "smoke",
                     "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", "--out", str(tmp_path / "run")])
    assert code == 2
    assert f"--ray-address 127.0.0.1:{port}: nothing answers there" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
