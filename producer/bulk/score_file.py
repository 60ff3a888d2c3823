"""`inferq score`: a products file in, the same rows with earnings out.

The input is read in fixed-size chunks; at most ``in_flight`` chunks are out
at once (back-pressure: memory stays bounded however large the file), and
results are written in input order as they arrive. Finished chunks are kept as
parts (producer.bulk.sinks), so a killed run resumed with ``resume=True`` scores
only what is missing and writes exactly the output of an uninterrupted run.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from inferq.core.chunks import chunk_id
from inferq.core.tables import require_columns
from inferq.errors import InferqError, ModelVersionMismatch
from producer.bulk.columns import Parsed, from_records, from_table
from producer.bulk.formats import (
    Chunk,
    Format,
    FormatError,
    columns_of,
    detect,
    read_chunks,
    render,
)
from producer.bulk.one_model import OnNewModel, on_one_model
from producer.bulk.parts import tables_of
from producer.bulk.prefetch import Prefetch
from producer.bulk.report import Progress, Summary, process_cpu_s
from producer.bulk.scorers import Preparing, RowErrors, Scorer
from producer.bulk.sinks import Manifest, PlainSink, ResumableSink, Sink
from producer.bulk.window import Window
from producer.bulk.writer import BackgroundWriter

# Rows per chunk of a new run. Each chunk costs the producer and the worker a fixed
# amount (a message, a result, a part file, a Redis round trip or three), so larger
# chunks leave more of the CPU to the rows: 65,536 cost 14.9 ms of the run per 16,384
# rows where 16,384-row chunks cost 21. The workers take up to INFERQ_MAX_CHUNK_ROWS.
DEFAULT_CHUNK_ROWS = 65_536


@dataclass(frozen=True)
class ScoreOptions:
    # None: DEFAULT_CHUNK_ROWS for a new run; a resumed run keeps the chunking its
    # manifest records (a run started with another default resumes as it began).
    chunk_rows: int | None = None
    in_flight: int = 4
    input_format: str | None = None
    output_format: str | None = None
    resume: bool = False
    # Write straight to the output, keeping nothing to resume from (the in-process
    # baseline: what a plain script would do).
    direct: bool = False
    # When the workers' model changes under a run (a roll-out): "restart" scores the
    # whole file again on the new model, "fail" stops. Never one output of two models.
    on_new_model: OnNewModel = "restart"


@dataclass
class _InFlight:
    chunk: Chunk
    parsed: Parsed
    ticket: Any


@dataclass(frozen=True)
class _Ready:
    """A chunk parsed on the reader thread, with what its scorer sends (its valid rows,
    or a Preparing scorer's encoding of them)."""

    parsed: Parsed
    payload: Any


def input_digest(path: Path) -> tuple[str, int]:
    """SHA-256 of the file and its line count (the progress bar's total), in one pass."""
    digest, lines = hashlib.sha256(), 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            lines += block.count(b"\n")
    return digest.hexdigest(), lines


def check_columns(path: Path, fmt: Format, features: Sequence[str]) -> None:
    """A feature column missing from the file fails the run before anything is sent."""
    names = columns_of(path, fmt)
    if names:  # None for JSON Lines (rows name their fields); [] for an empty file
        require_columns(path, names, features, noun="feature column")


def chunk_rows_of(output: Path, options: ScoreOptions) -> int:
    """The run's chunk size: the one asked for; else, resuming, the one the interrupted
    run recorded; else the default. One asked for that differs from the recorded one is
    refused by the sink (the parts were cut otherwise), never silently replaced."""
    if options.chunk_rows is not None:
        return options.chunk_rows
    recorded = ResumableSink.recorded_chunk_rows(output) if options.resume else None
    return recorded or DEFAULT_CHUNK_ROWS


def score_file(
    source: Path,
    output: Path,
    scorer: Scorer,
    options: ScoreOptions,
    progress_every_s: float = 10.0,
) -> Summary:
    """Score ``source`` into ``output`` with one model version, starting over on the new
    one if the workers' model changes mid-run (``options.on_new_model``)."""

    def refresh() -> str:
        scorer.refresh()
        return scorer.version

    def attempt() -> Summary:
        return _score_once(source, output, scorer, options, progress_every_s)

    return on_one_model(output, options.on_new_model, attempt, refresh)


def _score_once(
    source: Path, output: Path, scorer: Scorer, options: ScoreOptions, progress_every_s: float
) -> Summary:
    in_fmt = detect(source, options.input_format)
    out_fmt = detect(output, options.output_format)
    if in_fmt is Format.JSONL and out_fmt is not Format.JSONL:
        raise FormatError(
            "JSON Lines input is written as JSON Lines only (its rows have no fixed columns)"
        )
    check_columns(source, in_fmt, scorer.features)
    started, cpu_started = time.monotonic(), process_cpu_s()
    digest, lines = input_digest(source)
    chunk_rows = chunk_rows_of(output, options)
    manifest = Manifest(digest, chunk_rows, out_fmt.value, scorer.version)
    inputs = functools.partial(tables_of, source, in_fmt, chunk_rows)  # a join's, again
    sink: Sink = (
        PlainSink(output)
        if options.direct
        else ResumableSink(output, manifest, resume=options.resume, inputs=inputs)
    )
    total = pq.ParquetFile(source).metadata.num_rows if in_fmt is Format.PARQUET else lines
    progress = Progress(total, "rows", every_s=progress_every_s)
    run = _Run(scorer, sink, out_fmt, manifest, options, progress, Summary(output))
    # The next chunks are read and parsed on a thread of their own, ahead of this one.
    reader = Prefetch(run.parsed(read_chunks(source, in_fmt, chunk_rows)))
    try:
        try:
            run.all_chunks(reader)
        finally:
            reader.close()
            progress.close()
        if not run.summary.unscored_chunks:
            sink.finish(run.summary.chunks)
    finally:
        sink.abandon()  # closed now, not whenever collected (no-op once finished)
    run.summary.seconds = time.monotonic() - started
    run.summary.cpu_s = round(process_cpu_s() - cpu_started, 3)
    return run.summary


class _Run:
    def __init__(
        self,
        scorer: Scorer,
        sink: Sink,
        out_fmt: Format,
        manifest: Manifest,
        options: ScoreOptions,
        progress: Progress,
        summary: Summary,
    ) -> None:
        self.scorer, self.sink, self.out_fmt = scorer, sink, out_fmt
        # The input's digest and the chunking (as resolved for this run) name its chunks.
        self.manifest, self.options, self.progress = manifest, options, progress
        self.summary = summary
        self.output_key = str(summary.output.resolve())  # part of every chunk id: resolved once
        self.window: Window[_InFlight] = Window(options.in_flight, self._finish)
        # Rendering and writing finished chunks, on their own thread: this one only hands
        # chunks on and collects (the producer, not the workers, was the limit).
        self.writer = BackgroundWriter()

    def parsed(self, chunks: Iterable[Chunk]) -> Iterator[tuple[Chunk, _Ready | None]]:
        """Each chunk with its feature columns parsed and its payload made (None for a
        chunk already done): the reader thread's work."""
        prepare = self.scorer.prepare if isinstance(self.scorer, Preparing) else None
        for chunk in chunks:
            if self.sink.done(chunk.index):
                yield chunk, None
                continue
            parsed = self._parse(chunk)
            x = parsed.values if parsed.ok_rows.all() else parsed.values[parsed.ok_rows]
            yield chunk, _Ready(parsed, prepare(x) if prepare and len(x) else x)

    def all_chunks(self, chunks: Iterable[tuple[Chunk, _Ready | None]]) -> None:
        try:
            for chunk, ready in chunks:
                self.summary.chunks += 1
                if ready is None:
                    self._count_resumed(chunk)
                    continue
                if self.summary.unscored_chunks:
                    self.summary.unscored_chunks += 1  # a chunk failed: send no more, drain
                    continue
                self.window.add(self._submit(chunk, ready))
            self.window.drain()
            self.writer.flush()
        finally:
            # However the run ends, no write outlives it (a restart deletes the parts),
            # and no chunk still waiting for its send goes out after it.
            for item in self.window.abandon():
                if isinstance(item.ticket, Future):
                    item.ticket.cancel()
            self.writer.close()

    def _count_resumed(self, chunk: Chunk) -> None:
        ok, failed = self.sink.counts(chunk.index)
        self.summary.resumed_chunks += 1
        self._count(ok, failed)

    def _parse(self, chunk: Chunk) -> Parsed:
        features, rows = self.scorer.features, chunk.rows
        if isinstance(rows, list):
            return from_records(rows, features)
        if rows.num_rows:
            return from_table(rows, features)
        # A header-only or empty file: no feature columns to read.
        return Parsed(np.zeros((0, len(features))), [], np.zeros(0, dtype=bool))

    def _submit(self, chunk: Chunk, ready: _Ready) -> _InFlight:
        run = self.manifest
        cid = chunk_id(
            run.input_sha256, run.chunk_rows, chunk.index, self.scorer.version, self.output_key
        )
        ticket = self.scorer.submit(cid, ready.payload) if ready.parsed.ok_rows.any() else None
        return _InFlight(chunk, ready.parsed, ticket)

    def _finish(self, item: _InFlight) -> None:
        errors = list(item.parsed.errors)
        earnings = np.full(item.chunk.num_rows, np.nan)
        ok_rows = np.flatnonzero(item.parsed.ok_rows)
        refused: RowErrors = {}
        if item.ticket is not None:
            try:
                values, refused = self.scorer.collect(item.ticket, len(ok_rows))
            except ModelVersionMismatch:
                raise  # the run stops here: its output would hold two models
            except InferqError as exc:
                self.summary.unscored_chunks += 1
                self.summary.first_chunk_error = self.summary.first_chunk_error or str(exc)
                return
            earnings[ok_rows] = values
            for row, error in refused.items():
                errors[int(ok_rows[row])] = error
        failed = len(errors) - len(ok_rows) + len(refused)
        first = self.summary.first_row_errors
        if failed and len(first) < 5:  # a look through every row only where one failed
            first.extend([e for e in errors if e is not None][: 5 - len(first)])
        self._write_later(item, earnings, errors, failed)

    def _write_later(
        self, item: _InFlight, earnings: np.ndarray, errors: list[str | None], failed: int
    ) -> None:
        """Render and write the chunk on the writer thread, then drop its stored result
        (kept until then for a resume) there too: a Redis round trip the sending thread
        no longer waits for. Its rows are counted here once that is done."""
        chunk, ticket, ok = item.chunk, item.ticket, item.chunk.num_rows - failed

        def write() -> None:
            rendered = render(chunk, self.out_fmt, earnings, errors)
            self.sink.write(chunk.index, rendered, ok, failed)
            if ticket is not None:
                self.scorer.release(ticket)

        def then() -> None:
            self._count(ok, failed)

        self.writer.put(write, then)

    def _count(self, ok: int, failed: int) -> None:
        self.summary.count(ok, failed)
        self.progress.advance(ok + failed)
