"""`benchbox run`: validate a configuration, run every (method, seed) job, write a run folder."""
