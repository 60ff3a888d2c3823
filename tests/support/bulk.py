"""Bulk-run helpers: products files, and scorers without workers (small fakes behind
the real Scorer protocol)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from inferq.core.constants import COURSE_TARGET
from inferq.errors import ModelVersionMismatch
from inferq.tools.sample_data import generate

FEATURES = ["a", "b"]


class LinearScorer:
    """Dollars = 10 a + b; records what it was asked, and can fail on a chunk."""

    features = FEATURES
    version = "fake-1"

    def __init__(self, fail_after: int | None = None) -> None:
        self.chunks: list[str] = []
        self.fail_after = fail_after

    def submit(self, cid: str, x: np.ndarray) -> np.ndarray:
        if self.fail_after is not None and len(self.chunks) >= self.fail_after:
            raise KeyboardInterrupt  # the run is killed while this chunk is out
        self.chunks.append(cid)
        return np.asarray(10 * x[:, 0] + x[:, 1])

    def collect(self, ticket: np.ndarray, rows: int) -> tuple[np.ndarray, dict[int, str]]:
        return ticket, {}

    def release(self, ticket: Any) -> None:
        return None

    def refresh(self) -> None:
        return None


def csv_file(path: Path, rows: int, bad: dict[int, str] | None = None) -> Path:
    lines = ["id,a,b"] + [f"r{i},{i},{i % 7}" for i in range(rows)]
    for i, line in (bad or {}).items():
        lines[i + 1] = line
    path.write_text("\n".join(lines) + "\n")
    return path


class RollingScorer(LinearScorer):
    """A scorer whose workers get a new model after ``switch_after`` chunks: from then
    on a chunk sent for the old version is refused, as a worker refuses it; after
    ``refresh`` the run is on the new one (dollars = 100 a + b)."""

    def __init__(self, switch_after: int) -> None:
        super().__init__()
        self.switch_after = switch_after
        self.version = "fake-1"

    def submit(self, cid: str, x: np.ndarray) -> np.ndarray:
        self.chunks.append(cid)
        return np.asarray((100 if self.version == "fake-2" else 10) * x[:, 0] + x[:, 1])

    def collect(self, ticket: np.ndarray, rows: int) -> tuple[np.ndarray, dict[int, str]]:
        if self.version == "fake-1" and len(self.chunks) > self.switch_after:
            raise ModelVersionMismatch.between("fake-1", "fake-2")
        return ticket, {}

    def refresh(self) -> None:
        self.version = "fake-2"


BAD_ROWS = {10: ("unit_price", "abc"), 11: ("critic_rating", "")}


def products(path: Path, rows: int, bad: bool = True) -> Path:
    """A products CSV of generated games with an `sku` column; two rows bad unless ``bad``
    is False."""
    cols = generate(rows, seed=5)
    cols.pop(COURSE_TARGET)
    table = pa.table({"sku": [f"g{i}" for i in range(rows)], **cols})
    pacsv.write_csv(table, path)
    if bad:  # make a few rows bad, as text
        lines = path.read_text().splitlines()
        header = lines[0].replace('"', "").split(",")
        for row, (name, value) in BAD_ROWS.items():
            cells = lines[row + 1].split(",")
            cells[header.index(name)] = value
            lines[row + 1] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n")
    return path
