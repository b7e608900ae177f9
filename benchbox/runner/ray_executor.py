"""`benchbox run --executor ray`: every (method, seed) job as a task on a Ray cluster.

Nothing assumes a shared filesystem. The driver puts the dataset (manifest and hashes) and its
decoded image arrays into Ray's object store once; each task gets them from there with the job's
current folder (a killed run's stage files) and the checkpoints the driver's cache holds for it,
rebuilds them in a temporary folder on its node and runs `job.run_job`, the very function of a
local run. It sends back the job folder's files, the checkpoints it trained and its log lines;
the driver writes them into the run folder and its cache with the same atomic writes, `done.json`
last, so a folder made here is the one a local run makes. A task whose worker dies is retried
`--ray-retries` times by Ray, then recorded as failed; Ctrl-C cancels the tasks still running.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path

from ..data.dataset import Dataset
from ..errors import BenchboxError
from ..paths import atomic_write, cache_dir
from .job import DONE_FILE, JobInputs, JobSpec, _check_finished, checkpoint_dir, run_job
from .store import damaged_stage_files, read_json

INSTALL = "pip install 'benchbox[ray]'"
DEFAULT_RESOURCES = {"cpus": 1}  # a card without `resources:` (e.g. a plugin's class card)
POLL_S = 0.5  # how often the driver looks for started and finished tasks
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # as run.log's (run.run_log)


def require_ray():
    """The ray module, or a BenchboxError saying how to install it (checked before anything is loaded)."""
    try:
        import ray
    except ImportError as error:
        raise BenchboxError(f"--executor ray needs Ray, which is not installed here ({error}); install it with "
                            f"`{INSTALL}` on this machine and every node of the cluster, or drop --executor ray "
                            "to run the jobs in this process.") from None
    return ray


def preflight(address: str | None) -> None:
    """What can be refused before any data is loaded: Ray missing, nothing at --ray-address."""
    require_ray()
    _check_reachable(address)


def job_resources(card, profile: str) -> dict[str, float]:
    """The card's `resources:` of this profile over DEFAULT_RESOURCES: what one job asks for."""
    return {**DEFAULT_RESOURCES, **card.job_resources(profile)}


def task_options(resources: dict[str, float], retries: int) -> dict:
    """Ray task options of a job: its CPUs, GPUs and memory, and the retries after a worker death
    (never after a Python exception: run_job records a method's failure itself)."""
    options = {"num_cpus": resources.get("cpus", 1), "num_gpus": resources.get("gpus", 0),
               "max_retries": retries, "retry_exceptions": False}
    if resources.get("memory_gb"):
        options["memory"] = int(resources["memory_gb"] * 2**30)
    return options


def folder_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path, without the hidden ones (half-written atomic temporaries)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)}


def _write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def mirror_job_folder(job_dir: Path, files: dict[str, bytes]) -> None:
    """Make `job_dir` hold exactly `files` (what the job's folder on its worker held): `done.json` is
    removed first and written last, so the folder is sealed only once every stage file is in place."""
    job_dir = Path(job_dir)
    (job_dir / DONE_FILE).unlink(missing_ok=True)
    for name in set(folder_files(job_dir)) - set(files):  # what the job removed there (an older attempt's stages)
        (job_dir / name).unlink()
    for name, data in files.items():
        if name != DONE_FILE:
            _write_bytes(job_dir / name, data)
    if DONE_FILE in files:
        _write_bytes(job_dir / DONE_FILE, files[DONE_FILE])


def install_checkpoint(folder: Path, files: dict[str, bytes]) -> None:
    """A trained model's files into a checkpoint cache folder, `complete.json` (what marks it whole) last."""
    if (folder / "complete.json").exists():
        return
    for name, data in sorted(files.items(), key=lambda item: item[0] == "complete.json"):
        _write_bytes(folder / name, data)


def fit_folders(spec: JobSpec, card) -> list[str]:
    """The checkpoint folders (relative to the cache) a job reads or trains: its own, or for a variant
    (`fit_of`) its base's, as job.variant_of_fit computes it."""
    if card.fit_of:
        from ..registry import get_card

        base = get_card(card.fit_of)
        spec = replace(spec, method=base.name, settings=base.settings(spec.profile),
                       input_size=base.input_size(spec.profile))
    return [checkpoint_dir(spec).relative_to(cache_dir()).as_posix()]


def array_sizes(spec: JobSpec, card) -> set[int]:
    """The image sizes a job decodes: its input size, and its base's for a variant."""
    sizes = {spec.input_size}
    if card.fit_of:
        from ..registry import get_card

        sizes.add(get_card(card.fit_of).input_size(spec.profile))
    return sizes


class ShippedDataset(Dataset):
    """The driver's dataset on a worker: manifest and hashes as loaded there, and the decoded arrays
    the driver put in the object store instead of image files this node does not have."""

    shipped: dict = {}

    def arrays(self, size: int, progress: bool = True):
        if size not in self.shipped:
            raise BenchboxError(f"the driver sent this job the images at {sorted(self.shipped)} px, not {size} px")
        return self.shipped[size]


def folders_overridden() -> dict[str, dict[str, bytes]]:
    """The card and metric-suite folders the driver reads from $BENCHBOX_REGISTRY / $BENCHBOX_METRICS,
    as files, so a worker scores with the same suites and finds the same cards (variants' bases)."""
    from ..package_data import METRICS_ENV, REGISTRY_ENV

    return {env: {name: data for name, data in folder_files(Path(os.environ[env])).items() if "/" not in name}
            for env in (REGISTRY_ENV, METRICS_ENV) if os.environ.get(env)}


@contextmanager
def _overridden_folders(folders: dict[str, dict[str, bytes]], root: Path):
    """Write the driver's overridden folders under `root` and point their variables there meanwhile."""
    before = {env: os.environ.get(env) for env in folders}
    for env, files in folders.items():
        for name, data in files.items():
            (root / env / name).parent.mkdir(parents=True, exist_ok=True)
            (root / env / name).write_bytes(data)
        os.environ[env] = str(root / env)
    try:
        yield
    finally:
        for env, value in before.items():
            if value is None:
                os.environ.pop(env, None)
            else:
                os.environ[env] = value


@contextmanager
def _captured_log():
    """benchbox's INFO log of the task as text, for the driver's run.log."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger("benchbox")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def versions() -> dict:
    """What must match between the driver and a worker for a job's result to be the driver's."""
    import benchbox

    from .provenance import library_versions

    return {"benchbox": benchbox.__version__, **library_versions()}


def node_name() -> str:
    """This node as progress lines and run.json name it: host and Ray node id (hosts may share a name)."""
    import ray

    return f"{socket.gethostname()} (node {ray.get_runtime_context().get_node_id()[:8]})"


def run_task(spec: JobSpec, card, dataset: Dataset, split, arrays: dict, job_files: dict[str, bytes],
             checkpoints: dict[str, dict[str, bytes]], wanted_back: list[str], folders: dict, driver: dict,
             device: str, cpus: float, board) -> dict:
    """One job on a worker (the body of the Ray task): rebuild its folder, run it, send its files back."""
    import ray

    from ..training.runtime import resolve_device

    started = time.perf_counter()
    ray.get(board.started.remote(spec.name, node_name(), os.getpid()))  # counted before the job can die
    here = versions()
    differing = {name: (value, here.get(name)) for name, value in driver.items() if here.get(name) != value}
    if differing:
        listed = ", ".join(f"{name} {there} on the driver, {now} here" for name, (there, now) in differing.items())
        raise BenchboxError(f"node {node_name()} runs other versions than the driver ({listed}); install the same "
                            "benchbox and libraries on every node")
    shipped = ShippedDataset(**{f.name: getattr(dataset, f.name) for f in fields(Dataset)})
    shipped.shipped = {size: ray.get(ref) for size, ref in arrays.items()}
    for relative, files in checkpoints.items():
        install_checkpoint(cache_dir() / relative, files)
    with tempfile.TemporaryDirectory(prefix="benchbox-job-") as tmp, _overridden_folders(folders, Path(tmp)):
        job_dir = Path(tmp) / "job"
        for name, data in job_files.items():
            (job_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (job_dir / name).write_bytes(data)
        with _captured_log() as log_text:
            # the thread count a local run takes from the CPUs it may use, here from those the task holds
            resolved = resolve_device(device, num_threads=max(1, int(cpus)))
            result = run_job(spec, card, JobInputs(shipped, split, job_dir, resolved, progress=False))
        back = {relative: folder_files(cache_dir() / relative) for relative in wanted_back
                if (cache_dir() / relative / "complete.json").exists()}
        return {"result": result, "files": folder_files(job_dir), "checkpoints": back, "log": log_text.getvalue(),
                "node": node_name(), "device": resolved, "seconds": time.perf_counter() - started}


class JobBoard:
    """A Ray actor the tasks tell when they start (node, pid), which the driver reads as it waits."""

    def __init__(self):
        self.events = []

    def started(self, name: str, node: str, pid: int) -> None:
        self.events.append((name, node, pid))

    def drain(self) -> list:
        events, self.events = self.events, []
        return events


@contextmanager
def connected(address: str | None):
    """A connection to the cluster for this run (a caller's own open connection is used and kept)."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    _check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as error:
        where = address or os.environ.get("RAY_ADDRESS") or "this machine"
        raise BenchboxError(f"cannot connect to the Ray cluster at {where}: {error}. Start one (`ray start --head`) "
                            "or name a running one with --ray-address HEAD_IP:6379.") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str | None, timeout_s: float = 10.0) -> None:
    """Refuse a HOST:PORT nothing listens on now: ray.init would wait minutes before saying so."""
    host, _, port = (address or "").rpartition(":")
    if not host or "://" in address or not port.isdigit():
        return  # none given, "auto", or a ray:// client address: ray.init decides
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise BenchboxError(f"--ray-address {address}: nothing answers there ({error}); start the cluster's head with "
                            f"`ray start --head --port {port}` on {host}, or give the address it printed.") from None


def _warn_unplaceable(ray, wanted: dict[str, dict], say) -> None:
    """Say which jobs no node of the cluster can hold now (they wait for one to join, e.g. by an autoscaler)."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    for name, resources in wanted.items():
        need = {"CPU": resources.get("cpus", 1), "GPU": resources.get("gpus", 0),
                "memory": resources.get("memory_gb", 0) * 2**30}
        if not any(all(node.get(key, 0) >= value for key, value in need.items() if value) for node in nodes):
            say(f"{name}: no node of the cluster has {resources} now; the job waits until one joins "
                "(Ctrl-C stops the run, finished jobs are kept)")


def run_on_ray(specs: list[JobSpec], cards: dict, dataset: Dataset, split, run_dir: Path, config,
               progress: bool, finished) -> None:
    """Run every job on the cluster and call `finished(spec, result, extra)` as each one ends, in the
    driver, after its files are in the run folder. Jobs already finished are skipped without a task."""
    from tqdm.auto import tqdm

    total = len(specs)
    index = {spec.name: number for number, spec in enumerate(specs, 1)}
    bar = None

    def say(line: str, always: bool = False) -> None:
        if progress or always:
            (bar or tqdm).write(line)

    todo = []
    for spec in specs:
        done, notes = _check_finished(spec, run_dir / spec.method / f"seed{spec.seed}", spec.job_key())
        if done is not None:
            finished(spec, {"status": "done", "error": None, "skipped": True, "repaired": [], **done}, {})
            say(f"[{index[spec.name]}/{total}] {spec.name}: done earlier, skipped")
        else:
            todo.append((spec, notes))
    if not todo:
        return
    with connected(config.ray_address) as ray:
        wanted = {spec.name: job_resources(cards[spec.method], spec.profile) for spec, _ in todo}
        _warn_unplaceable(ray, wanted, lambda line: say(line, always=True))
        dataset_ref = ray.put(dataset)
        split_ref = ray.put(split)
        sizes = set().union(*(array_sizes(spec, cards[spec.method]) for spec, _ in todo))
        array_refs = {size: ray.put(dataset.arrays(size, progress=progress)) for size in sorted(sizes)}
        bar = tqdm(total=total, initial=total - len(todo), desc="jobs", unit="job", disable=not progress)
        board = ray.remote(num_cpus=0)(JobBoard).remote()
        task = ray.remote(run_task)
        folders, driver = folders_overridden(), versions()
        pending, notes_of, attempts, nodes, starts = {}, {}, {}, {}, {}
        for spec, notes in todo:
            card = cards[spec.method]
            job_dir = run_dir / spec.method / f"seed{spec.seed}"
            have, lack = {}, []
            for relative in fit_folders(spec, card):
                folder = cache_dir() / relative
                if (folder / "complete.json").exists():
                    have[relative] = folder_files(folder)
                else:
                    lack.append(relative)
            needed = {size: array_refs[size] for size in array_sizes(spec, card)}
            ref = task.options(**task_options(wanted[spec.name], config.ray_retries)).remote(
                spec, card, dataset_ref, split_ref, needed, folder_files(job_dir), have, lack, folders, driver,
                config.device, wanted[spec.name].get("cpus", 1), board)
            pending[ref], notes_of[spec.name] = spec, notes
        def note_starts() -> None:
            for name, node, pid in ray.get(board.drain.remote()):
                attempts[name] = attempts.get(name, 0) + 1
                nodes[name], starts[name] = node, time.perf_counter()
                again = f" (attempt {attempts[name]}, after its worker died)" if attempts[name] > 1 else ""
                say(f"[{index[name]}/{total}] {name}: started on {node}{again}")

        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                note_starts()
                for ref in ready:
                    spec = pending.pop(ref)
                    note_starts()  # a job that started and ended within one poll
                    result, extra = _collect(ray, ref, spec, run_dir, attempts.get(spec.name, 0))
                    result["repaired"] = notes_of[spec.name] + result.get("repaired", [])
                    for note in result["repaired"]:
                        say(f"[{index[spec.name]}/{total}] {note}", always=True)
                    finished(spec, result, extra)
                    line = _line(spec, result, extra, nodes.get(spec.name), starts.get(spec.name))
                    say(f"[{index[spec.name]}/{total}] {line}", always=result["status"] != "done")
                    bar.update()
        except KeyboardInterrupt:
            for ref, spec in pending.items():
                ray.cancel(ref, force=True)
            say(f"interrupted: cancelled {len(pending)} job(s) still on the cluster "
                f"({', '.join(spec.name for spec in pending.values())}); the finished ones are kept in {run_dir}, "
                "and the same command resumes the run", always=True)
            raise
        finally:
            bar.close()
            ray.kill(board)


def _collect(ray, ref, spec: JobSpec, run_dir: Path, attempts: int) -> tuple[dict, dict]:
    """A finished task's result, its files written into the run folder and its checkpoints into the
    cache; a task that never returned (its worker died every time, an error outside the job) is a failure."""
    job_dir = run_dir / spec.method / f"seed{spec.seed}"
    try:
        payload = ray.get(ref)
    except ray.exceptions.RayError as error:
        cause = getattr(error, "cause", None) if isinstance(error, ray.exceptions.RayTaskError) else None
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else f"{type(error).__name__}: {error}"
        reason = reason.strip().splitlines()[0] if reason.strip() else type(error).__name__
        tries = f" after {attempts} attempt(s)" if attempts else ""
        reason = f"on Ray{tries}: {reason}"
        text = f"{spec.name} failed {reason}\n\n{error}\n"
        atomic_write(job_dir / "error.txt", lambda tmp: Path(tmp).write_text(text))
        return {"status": "failed", "error": reason, "timings": {}}, {"attempts": attempts}
    mirror_job_folder(job_dir, payload["files"])
    for relative, files in payload["checkpoints"].items():
        install_checkpoint(cache_dir() / relative, files)
    if payload["log"]:
        with open(run_dir / "run.log", "a", encoding="utf-8") as handle:
            handle.write(payload["log"])
    result = payload["result"]
    done_path = job_dir / DONE_FILE
    if result["status"] == "done" and (not done_path.exists() or damaged_stage_files(job_dir, read_json(done_path))):
        done_path.unlink(missing_ok=True)
        result = {"status": "failed", "error": "on Ray: the job's files came back incomplete", "timings": result.get("timings", {})}
    return result, {"node": payload["node"], "device": payload["device"], "attempts": attempts,
                    "seconds": round(payload["seconds"], 3)}


def _line(spec: JobSpec, result: dict, extra: dict, node: str | None, start: float | None) -> str:
    where = f" on {extra.get('node') or node}" if (extra.get("node") or node) else ""
    took = f" in {extra['seconds']:.1f} s" if "seconds" in extra else (
        f" after {time.perf_counter() - start:.1f} s" if start else "")
    if result["status"] != "done":
        return f"{spec.name}: FAILED{where}{took} ({result['error']})"
    parts = [f"{key.removesuffix('_s')} {value:.1f}s" for key, value in result.get("timings", {}).items() if value]
    return f"{spec.name}: done{where}{took} (" + ", ".join(parts) + ")"
