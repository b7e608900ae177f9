"""Package data, not code: benchbox installs this folder as `benchbox._registry` (see README.md here)."""
