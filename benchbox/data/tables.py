"""Reading users' metadata CSVs with errors that name the file, the column and the fix."""

from __future__ import annotations

import difflib
from pathlib import Path

import pandas as pd

from ..errors import BenchboxError


def read_table(path: Path, required: tuple[str, ...], what: str) -> pd.DataFrame:
    """Read a CSV as strings and check that `required` columns are present (suggesting near names)."""
    if not path.is_file():
        raise BenchboxError(f"{path}: not found; {what} must be there.")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise BenchboxError(f"{path}: cannot parse as CSV ({error}).") from error
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        hints = []
        for column in missing:
            close = difflib.get_close_matches(column, table.columns, n=1, cutoff=0.5)
            hints.append(f"{column!r}" + (f" (found {close[0]!r}: rename it?)" if close else ""))
        raise BenchboxError(
            f"{path}: missing column(s) {', '.join(hints)}; {what} needs columns {list(required)}, "
            f"the file has {list(table.columns)}."
        )
    return table


def check_labels(table: pd.DataFrame, column: str, allowed: tuple[str, ...], path: Path) -> None:
    """Refuse a label outside `allowed`, naming the first bad row (by file line, header = line 1)."""
    bad = ~table[column].isin(allowed)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise BenchboxError(
            f"{path}: line {row + 2}, column {column!r}: label {table[column].iloc[row]!r} "
            f"is not one of {list(allowed)} ({int(bad.sum())} row(s) affected). Fix or remove those rows."
        )


def check_unique(table: pd.DataFrame, column: str, path: Path) -> None:
    """Refuse duplicated ids, naming the first duplicate and its rows."""
    duplicated = table[column][table[column].duplicated(keep=False)]
    if len(duplicated):
        first = duplicated.iloc[0]
        rows = [int(i) + 2 for i in table.index[table[column] == first]]
        raise BenchboxError(
            f"{path}: {column} {first!r} appears on lines {rows} ({duplicated.nunique()} duplicated id(s)); "
            "each image must be listed once."
        )


def check_filled(table: pd.DataFrame, column: str, path: Path) -> None:
    """Refuse empty (or blank) ids, naming the first such line: an image needs an id to be split."""
    blank = table[column].str.strip() == ""
    if blank.any():
        row = int(blank.to_numpy().nonzero()[0][0])
        raise BenchboxError(
            f"{path}: line {row + 2}, column {column!r} is empty ({int(blank.sum())} row(s) affected); "
            "every row needs an id. Fill it in or remove those rows."
        )
