"""The HAM10000 / ISIC 2018 Task 3 label space, in one place."""

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
MALIGNANT_CLASSES = ("akiec", "bcc", "mel")
BINARY_CLASSES = ("benign", "malignant")
# Column order of the ISIC 2018 Task 3 ground-truth and submission CSVs.
ISIC_COLUMNS = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}
MALIGNANT_INDICES = tuple(CLASS_INDEX[c] for c in MALIGNANT_CLASSES)
