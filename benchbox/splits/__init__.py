"""Fixed, hashed, leak-free split manifests and the leakage audit.

grouping.py (lesion + near-duplicate groups) -> assign.py (groups dealt to splits and folds by
class) -> build.py (split tables) -> manifest.py (write, read, verify; the canonical splits)
-> audit.py (what a split shares between train, val and test). commands.py is the CLI.
Only constants live here, so `benchbox --help` does not import numpy or pandas.
"""

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
SCHEMES = ("lesion", "official")
