"""Every bad predictions file is refused by file, line and column (issue 14, point 4)."""

import numpy as np
import pandas as pd
import pytest

from benchbox.cli import main
from benchbox.errors import BenchboxError
from benchbox.labels import CLASSES, ISIC_COLUMNS
from benchbox.score.predictions_file import read_predictions_file


def isic_frame(n: int = 6, seed: int = 0) -> pd.DataFrame:
    proba = np.random.default_rng(seed).dirichlet(np.ones(7), n)
    frame = pd.DataFrame({"image": [f"ISIC_{i:07d}" for i in range(n)]})
    for column in ISIC_COLUMNS:
        frame[column] = proba[:, CLASSES.index(column.lower())]
    return frame


def write(tmp_path, frame: pd.DataFrame, name: str = "submission.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_the_isic_submission_is_read_into_benchbox_class_order(tmp_path):
    frame = isic_frame()
    read = read_predictions_file(write(tmp_path, frame))
    assert (read.layout, read.task) == ("isic2018", "multiclass")
    np.testing.assert_array_equal(read.proba[:, CLASSES.index("mel")], frame["MEL"].to_numpy())
    np.testing.assert_array_equal(read.proba[:, CLASSES.index("vasc")], frame["VASC"].to_numpy())
    assert list(read.image_ids) == list(frame["image"])


def test_a_binary_csv_gets_its_benign_column(tmp_path):
    read = read_predictions_file(write(tmp_path, pd.DataFrame({"image": ["a", "b"], "malignant": [0.25, 0.9]})))
    assert (read.layout, read.task) == ("binary", "binary")
    np.testing.assert_allclose(read.proba, [[0.75, 0.25], [0.1, 0.9]])


def _damaged(change):
    frame = isic_frame()
    changed = change(frame)  # edits in place (None) or returns a new frame
    return frame if changed is None else changed


@pytest.mark.parametrize("change, message", [
    (lambda f: f.rename(columns={"MEL": "melanoma"}),
     "header image,melanoma,NV,BCC,AKIEC,BKL,DF,VASC is none of the layouts benchbox scores"),
    (lambda f: f.loc.__setitem__((3, "image"), "ISIC_0000001"),
     "image ids appear more than once, at line 3 (ISIC_0000001), line 5 (ISIC_0000001)"),
    (lambda f: f.loc.__setitem__((2, "NV"), np.nan),
     "column NV holds a missing, NaN, infinite or non-numeric value at line 4 (ISIC_0000002)"),
    (lambda f: f.loc.__setitem__((4, "BKL"), np.inf),
     "column BKL holds a missing, NaN, infinite or non-numeric value at line 6 (ISIC_0000004)"),
    (lambda f: f.loc.__setitem__((0, "DF"), -0.1), "column DF holds values outside [0, 1] at line 2 (ISIC_0000000)"),
    (lambda f: f.loc.__setitem__((1, "MEL"), f.loc[1, "MEL"] + 0.01),
     "rows at line 3 (ISIC_0000001) do not sum to 1"),
    (lambda f: f.loc.__setitem__((5, "image"), " "), "empty image at line 7"),
])
def test_bad_files_are_refused_by_line_and_column_and_nothing_is_written(tmp_path, capsys, change, message):
    path = write(tmp_path, _damaged(change))
    with pytest.raises(BenchboxError) as error:
        read_predictions_file(path)
    assert str(error.value).startswith(f"{path}: {message}")
    out = tmp_path / "run"
    assert main(["score", str(path), "--data", "synthderm", "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith(f"benchbox: error: {path}: {message}")
    assert not out.exists()


def test_labels_given_as_probabilities_are_refused(tmp_path):
    frame = isic_frame()
    one_hot = np.eye(7)[np.arange(6) % 7]
    for j, column in enumerate(ISIC_COLUMNS):
        frame[column] = one_hot[:, j]
    with pytest.raises(BenchboxError, match="every value is 0 or 1, so these look like labels"):
        read_predictions_file(write(tmp_path, frame))
    hard = pd.DataFrame({"image": ["a", "b", "c"], "malignant": [1, 0, 1]})
    with pytest.raises(BenchboxError, match="look like labels"):
        read_predictions_file(write(tmp_path, hard, "binary.csv"))


def test_a_missing_file_and_a_file_that_is_not_csv_are_named(tmp_path):
    with pytest.raises(BenchboxError, match="does not exist"):
        read_predictions_file(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(BenchboxError, match="empty.csv cannot be read as CSV"):
        read_predictions_file(tmp_path / "empty.csv")
