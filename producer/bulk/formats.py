"""Bulk file formats: read a file as fixed-size chunks, render a chunk's output.

CSV and Parquet chunks are Arrow tables (CSV columns are read as text, so a
bad value in row 900,000 cannot break the parsing of the rows around it, and
the input's text is copied to the output unchanged). JSON Lines chunks are
lists of objects. Chunk boundaries depend only on the file and ``chunk_rows``,
which is what makes chunk ids (and resumed runs) deterministic.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from inferq.core.tables import TableError

RESULT_COLUMNS = ("earnings_usd", "error")
_READ_BLOCK_BYTES = 1 << 20


class Format(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"
    JSONL = "jsonl"


_SUFFIXES = {
    ".csv": Format.CSV,
    ".parquet": Format.PARQUET,
    ".pq": Format.PARQUET,
    ".jsonl": Format.JSONL,
    ".ndjson": Format.JSONL,
}


class FormatError(TableError):
    """The file cannot be read as the format, or lacks what scoring needs."""


def detect(path: Path, flag: str | None) -> Format:
    if flag:
        return Format(flag)
    try:
        return _SUFFIXES[path.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(_SUFFIXES))
        raise FormatError(f"{path}: unknown format (suffix one of {known}, or pass it)") from None


class BadLine(str):
    """A JSON line that is not an object: scored as a failed row, never dropped."""


@dataclass(frozen=True)
class Chunk:
    index: int
    rows: pa.Table | list[Any]

    @property
    def num_rows(self) -> int:
        return self.rows.num_rows if isinstance(self.rows, pa.Table) else len(self.rows)


def columns_of(path: Path, fmt: Format) -> list[str] | None:
    """The file's column names (None for JSON Lines, whose rows name their own fields)."""
    if fmt is Format.CSV:
        try:
            with path.open(newline="", encoding="utf-8") as f:
                return next(csv.reader(f), [])
        except (UnicodeDecodeError, csv.Error) as exc:
            raise FormatError(f"{path}: not a UTF-8 CSV header: {exc}") from None
    if fmt is Format.PARQUET:
        try:
            return list(pq.read_schema(path).names)
        except pa.ArrowException as exc:
            raise FormatError(f"{path}: not a readable Parquet file: {exc}") from None
    return None


def read_chunks(path: Path, fmt: Format, chunk_rows: int) -> Iterator[Chunk]:
    """Chunks of exactly ``chunk_rows`` rows (the last may be shorter); CSV and Parquet
    always give at least one chunk, so an empty file still has a header to write."""
    if fmt is Format.JSONL:
        yield from _jsonl_chunks(path, chunk_rows)
        return
    tables = _csv_batches(path) if fmt is Format.CSV else _parquet_batches(path, chunk_rows)
    for index, table in enumerate(_rechunk(tables, chunk_rows)):
        yield Chunk(index, table)


def _csv_batches(path: Path) -> Iterator[pa.Table]:
    names = columns_of(path, Format.CSV)
    if not names:
        yield pa.table({})
        return
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names})
    read = pacsv.ReadOptions(block_size=_READ_BLOCK_BYTES)
    try:
        reader = pacsv.open_csv(path, read_options=read, convert_options=convert)
        yield pa.Table.from_batches([], schema=reader.schema)
        for batch in reader:
            yield pa.Table.from_batches([batch])
    except pa.ArrowInvalid as exc:
        raise FormatError(f"{path}: {exc}") from None


def _parquet_batches(path: Path, chunk_rows: int) -> Iterator[pa.Table]:
    try:
        file = pq.ParquetFile(path)
    except pa.ArrowException as exc:
        raise FormatError(f"{path}: not a readable Parquet file: {exc}") from None
    yield file.schema_arrow.empty_table()
    try:
        for batch in file.iter_batches(batch_size=chunk_rows):
            yield pa.Table.from_batches([batch])
    except (pa.ArrowException, OSError) as exc:  # damaged past its footer
        raise FormatError(f"{path}: not a readable Parquet file: {exc}") from None


def _rechunk(tables: Iterable[pa.Table], chunk_rows: int) -> Iterator[pa.Table]:
    """Re-cut a stream of tables (the first may be empty: it carries the schema)."""
    pending: list[pa.Table] = []
    held = 0
    emitted = False
    for table in tables:
        pending.append(table)
        held += table.num_rows
        while held >= chunk_rows > 0:
            whole = pa.concat_tables(pending)
            yield whole.slice(0, chunk_rows).combine_chunks()
            emitted = True
            pending, held = [whole.slice(chunk_rows)], held - chunk_rows
    if held or not emitted:
        yield pa.concat_tables(pending).combine_chunks()


def _jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    records: list[Any] = []
    index = 0
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue  # blank lines separate nothing in JSON Lines
            records.append(_record(line, number))
            if len(records) == chunk_rows:
                yield Chunk(index, records)
                records, index = [], index + 1
    if records:
        yield Chunk(index, records)


def _record(line: bytes, number: int) -> Any:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return BadLine(f"invalid_json: line {number}: {exc}")
    if not isinstance(value, dict):
        return BadLine(f"row_not_an_object: line {number} is a JSON {type(value).__name__}")
    return value


def render(
    chunk: Chunk, fmt: Format, earnings: np.ndarray, errors: list[str | None]
) -> bytes | pa.Table:
    """A chunk's output: bytes (the first CSV chunk carries the header), a table for Parquet."""
    if isinstance(chunk.rows, list):
        if fmt is not Format.JSONL:
            raise FormatError("JSON Lines input is written as JSON Lines only (no fixed columns)")
        return _jsonl_bytes(chunk.rows, earnings, errors)
    table = with_results(chunk.rows, earnings, errors)
    buffer = io.BytesIO()
    if fmt is Format.CSV:
        options = pacsv.WriteOptions(include_header=chunk.index == 0)
        pacsv.write_csv(table, buffer, write_options=options)
    elif fmt is Format.PARQUET:
        return table
    else:
        return _jsonl_bytes(table.to_pylist(), earnings, errors)
    return buffer.getvalue()


def with_results(table: pa.Table, earnings: np.ndarray, errors: list[str | None]) -> pa.Table:
    """The input's columns (an input's own result columns replaced) plus the results."""
    table = _without_results(table)
    dollars = pa.array(earnings, type=pa.float64(), mask=np.isnan(earnings))
    table = table.append_column("earnings_usd", dollars)
    return table.append_column("error", pa.array(errors, type=pa.string()))


def with_stored_results(table: pa.Table, results: pa.Table) -> pa.Table:
    """What ``with_results`` gave, from the input's columns and the result columns it
    appended (kept in a part)."""
    table = _without_results(table)
    for name in RESULT_COLUMNS:
        table = table.append_column(results.schema.field(name), results.column(name))
    return table


def _without_results(table: pa.Table) -> pa.Table:
    for name in RESULT_COLUMNS:
        if name in table.column_names:
            table = table.drop_columns(name)
    return table


def _jsonl_bytes(records: list[Any], earnings: np.ndarray, errors: list[str | None]) -> bytes:
    lines = []
    for record, value, error in zip(records, earnings, errors, strict=True):
        base = record if isinstance(record, dict) else {}
        out = {**base, "earnings_usd": None if np.isnan(value) else float(value), "error": error}
        lines.append(json.dumps(out, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode() if lines else b""
