"""The names `benchbox validate --help` shows, without importing numpy or pandas."""

DEFAULT_METHOD = "msfa"  # the quick profile's clearest learner on the default board
CHECKS = ("leakage", "subgroups", "contrast", "shortcut", "randomisation")
