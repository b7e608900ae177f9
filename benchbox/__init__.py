"""benchbox: a leak-free evaluation and benchmarking harness for dermoscopic lesion classifiers."""

__version__ = "0.1.0"
