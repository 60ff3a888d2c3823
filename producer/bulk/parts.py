"""A bulk run's part files: their names, checksums and contents.

A part is named ``index.ok.failed.checksum.part``: the chunk's index, its rows scored
and failed, and a SHA-256 prefix of its bytes, so a part cut short by a crash or
damaged on disk is told apart from a whole one (and scored again). Bytes output
(CSV, JSON Lines) is kept as it was written. A Parquet output's part holds only the
chunk's two result columns, as an Arrow IPC stream: the input's own columns are
read again from the input (whose SHA-256 the manifest holds) when a resumed run
joins its parts, so a part no longer copies, hashes and writes every input value a
second time (a 65,536-row chunk of the sample products: 0.8 MB instead of 5.5).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from producer.bulk.formats import RESULT_COLUMNS, Format, read_chunks, with_stored_results

# Recorded in the manifest: a Parquet part holds the chunk's result columns only.
PART_FORMAT = "results"
# The input's tables again, chunk by chunk and in order, for a join (None: bytes only).
Inputs = Callable[[], Iterable[pa.Table]]


def name(index: int, ok: int, failed: int, data: bytes | pa.Buffer) -> str:
    return f"{index:08d}.{ok}.{failed}.{_digest(data)}.part"


def field(part: Path, position: int) -> int:
    """index.ok.failed.checksum.part -> one of its numbers."""
    return int(part.name.split(".")[position])


def intact(part: Path) -> bool:
    """Whether a part's bytes are those it was written with (a crash may cut a part short
    after its rename, or a disk damage it: resume then scores that chunk again)."""
    try:
        return _digest(part.read_bytes()) == part.name.split(".")[3]
    except (OSError, IndexError):
        return False


def results_ipc(table: pa.Table) -> pa.Buffer:
    """A rendered Parquet chunk's part: its result columns as an Arrow IPC stream (no
    encoding now, none to undo when joining), kept as Arrow's buffer, hashed and written
    as it is."""
    results = table.select(list(RESULT_COLUMNS))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, results.schema) as writer:
        writer.write_table(results)
    return sink.getvalue()


def write_atomically(path: Path, data: bytes | pa.Buffer) -> None:
    # No fsync per part (it cost more than the scoring): a part is renamed into place only
    # once written, and one a crash cut short fails its checksum on resume.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def join_parquet(parts: list[Path], out: Path, inputs: Inputs | None) -> None:
    """The parts' chunks, in order, as one Parquet file: each result part beside its
    chunk's input columns read again; a part of a whole table (an older version's) as it
    is. The same tables the run would have streamed, so the same bytes."""
    writer: pq.ParquetWriter | None = None
    tables = _tables(inputs)
    for index, part in enumerate(parts):
        with pa.memory_map(str(part)) as source:
            table = pa.ipc.open_stream(source).read_all()
        rows = next(tables)  # read in step with the parts, even where a part is whole
        if table.column_names == list(RESULT_COLUMNS):
            if rows is None:
                raise ValueError(f"{part}: a results part, and no input to join it with")
            table = with_stored_results(rows, table)
        if writer is None:
            writer = pq.ParquetWriter(out, table.schema)
        if table.num_rows or index == 0:
            writer.write_table(table)
    assert writer is not None
    writer.close()


def tables_of(source: Path, fmt: Format, chunk_rows: int) -> Iterator[pa.Table]:
    """A table input's chunks again (the same cut as the run's), for ``join_parquet``."""
    for chunk in read_chunks(source, fmt, chunk_rows):
        if not isinstance(chunk.rows, pa.Table):
            raise ValueError(f"{source}: JSON Lines rows are not joined as Parquet")
        yield chunk.rows


def _tables(inputs: Inputs | None) -> Iterator[pa.Table | None]:
    if inputs is not None:
        yield from inputs()
    while True:
        yield None


def _digest(data: bytes | pa.Buffer) -> str:
    return hashlib.sha256(data).hexdigest()[:32]
