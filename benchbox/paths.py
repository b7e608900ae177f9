"""Where benchbox keeps generated data and decoded-image caches."""

import os
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
