"""Tables of named columns: CSV reading for training and `inferq predict --csv`, and the
one check that a file has the columns a command needs (bulk scoring uses it too)."""

from __future__ import annotations

import csv
import difflib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


class TableError(ValueError):
    """A CSV file does not have the columns or values a command needs."""


def read_header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise TableError(f"{path} is empty: expected a header line of column names")
    return [name.strip() for name in header]


def require_columns(
    path: Path, header: Sequence[str], needed: Sequence[str], noun: str = "column"
) -> None:
    """TableError naming each missing column, with a "did you mean" for a near miss."""
    missing = [name for name in needed if name not in header]
    if missing:
        hints = ", ".join(_with_hint(name, header) for name in missing)
        raise TableError(f"{path} lacks {noun}(s): {hints}; it has {', '.join(header)}")


def _with_hint(missing: str, names: Sequence[str]) -> str:
    by_lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(missing.lower(), list(by_lower), n=1)
    return f"{missing} (did you mean {by_lower[close[0]]}?)" if close else missing


def iter_rows(path: Path) -> Iterator[dict[str, str]]:
    """Rows as dicts of the raw cell strings (header names stripped)."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = [name.strip() for name in next(reader, [])]
        for cells in reader:
            if cells:
                yield dict(zip(header, cells, strict=False))


def read_numeric(path: Path, columns: Sequence[str]) -> np.ndarray:
    """The named columns as a float64 array (rows x columns); a bad cell names its line."""
    require_columns(path, read_header(path), columns)
    rows = []
    for line, row in enumerate(iter_rows(path), start=2):
        try:
            rows.append([float(row[name]) for name in columns])
        except (KeyError, ValueError):
            bad = next(n for n in columns if not _is_float(row.get(n)))
            raise TableError(
                f"{path}:{line}: column {bad} is {row.get(bad)!r}, not a number"
            ) from None
    if not rows:
        raise TableError(f"{path} has a header but no rows")
    return np.asarray(rows, dtype=np.float64)


def _is_float(cell: str | None) -> bool:
    try:
        float(cell)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True
