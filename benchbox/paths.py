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


def atomic_write(path: Path, write) -> None:
    """Call write(temp_path), then rename over `path` (same folder, so the rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
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
