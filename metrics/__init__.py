"""Package data, not code: benchbox installs this folder as `benchbox._metrics` (see README.md here)."""
