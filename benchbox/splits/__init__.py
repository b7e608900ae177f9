"""Fixed, hashed, leak-free split manifests and the leakage audit.

grouping.py (lesion + near-duplicate groups) -> assign.py (groups dealt to splits and folds by
class) or drop.py (an official split's leaking val/test images dropped) -> build.py (split
tables) -> manifest.py (write, read, verify; the canonical splits) -> audit.py (what a split
shares between train, val and test). commands.py is the CLI.
Only constants live here, so `benchbox --help` does not import numpy or pandas.
"""

SPLITS = ("train", "val", "test")
# The split value of an image `--drop-leaking` took out of an official split: listed (so the CSV,
# and its sha256, still covers every dataset image) but in no part; code that picks rows by a
# value of SPLITS never sees it.
DROPPED = "dropped"
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
# The built-in synthderm's fixed split (train, val, test; not that of a synthderm:DIR): twice the usual
# test part, so the default board's intervals are narrower (628 test images of 2,096), at the cost of a
# seventh of the training images, which the quick profiles' epochs absorb.
SYNTHDERM_FRACTIONS = (0.60, 0.10, 0.30)
SCHEMES = ("lesion", "official")
