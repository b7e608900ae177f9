"""Where benchbox keeps generated data and caches, and how it writes files that must never be half-written."""

import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: $BENCHBOX_CACHE, else $XDG_CACHE_HOME/benchbox, else ~/.cache/benchbox."""
    root = os.environ.get("BENCHBOX_CACHE")
    if root:
        path = Path(root)
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "benchbox"
    path.mkdir(parents=True, exist_ok=True)
    return path


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (/proc), else by setting and restoring."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode an ordinary open() (0o666) or mkdir() (0o777) gives a new file under the umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def atomic_write(path: Path, write) -> None:
    """Call write(temp_path), then rename over `path` (same folder, so the rename is atomic).

    mkstemp makes the temporary file 0600; it gets the umask's mode before the rename, so a
    shared run folder stays readable by the group like any file written with open()."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def portable_path(path: Path, run_dir: Path) -> str:
    """A path as a run folder records it: `<cache>/...` inside the cache, `<benchbox>/...` inside the
    installed package, else relative to the run folder, so no machine's absolute path is written."""
    path = Path(path).resolve()
    for root, label in ((cache_dir().resolve(), "<cache>"), (Path(__file__).resolve().parent, "<benchbox>")):
        if path.is_relative_to(root):
            return f"{label}/{path.relative_to(root).as_posix()}"
    return Path(os.path.relpath(path, Path(run_dir).resolve())).as_posix()


def recorded_path(text: str, run_dir: Path) -> Path:
    """The path a run folder recorded with `portable_path`, on this machine."""
    for label, root in (("<cache>/", cache_dir()), ("<benchbox>/", Path(__file__).resolve().parent)):
        if text.startswith(label):
            return root / text[len(label):]
    path = Path(text)
    return path if path.is_absolute() else (Path(run_dir) / path).resolve()
