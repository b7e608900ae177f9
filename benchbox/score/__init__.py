"""`benchbox score`: a model trained elsewhere, scored from its predictions file on benchbox's split,
metrics, intervals, subgroups and comparisons, as one more entry of a run folder."""
