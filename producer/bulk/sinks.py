"""Where a bulk run's finished chunks go: part files until the output is whole
(resumable), or straight into the output (the in-process baseline).

Each finished chunk is one part file, written to a temporary name and renamed,
so a part exists completely or not at all, whenever the run is killed. Writing
the same chunk twice replaces its part: no duplicate rows. The output file is
assembled from the parts, in chunk order, once all of them exist; a manifest
ties the parts to the input's content, the chunking and the model version, so
``--resume`` never mixes two inputs or two models. What a part holds:
producer.bulk.parts.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq

from producer.bulk import parts
from producer.bulk.formats import Format

Rendered: TypeAlias = bytes | pa.Table


class ResumeError(ValueError):
    """A work directory exists that this run may not (or cannot) continue."""


class ModelChangedSinceRun(ResumeError):
    """The work directory's parts were scored by another model version than today's."""

    def __init__(self, directory: Path, before: str, now: str) -> None:
        super().__init__(
            f"{directory} holds parts scored by model {before}; the workers now serve {now}: "
            "pass --on-new-model restart to score everything again, or delete it"
        )
        self.before, self.now = before, now


@dataclass(frozen=True)
class Manifest:
    input_sha256: str
    chunk_rows: int
    output_format: str
    model_version: str
    # What a Parquet part holds: "results" (parts.py). Versions before it wrote no such
    # field and whole tables, which a resume still joins; a version before it refuses a
    # manifest that has it, so it never joins results parts as if they were whole.
    part_format: str = parts.PART_FORMAT


class Sink(Protocol):
    """Where a run's rendered chunks go, in chunk order."""

    def done(self, index: int) -> bool: ...
    def counts(self, index: int) -> tuple[int, int]: ...
    def write(self, index: int, data: Rendered, ok: int, failed: int) -> None: ...
    def finish(self, chunks: int) -> None: ...
    def abandon(self) -> None: ...


class ResumableSink:
    """The resumable sink: one part file per finished chunk, joined at the end."""

    def __init__(
        self, output: Path, manifest: Manifest, *, resume: bool, inputs: parts.Inputs | None = None
    ) -> None:
        self.output = output
        self.dir = self.dir_of(output)
        self.manifest = manifest
        self.inputs = inputs  # a Parquet output's parts hold its results only (parts.py)
        self._found: dict[int, Path] = {}
        self._open(resume)
        # The output written as the parts are, while they come in order from chunk 0:
        # then it is whole when the last part is, with no join left to wait for (joining
        # 1M rows of Parquet re-encodes them all). A resumed run joins its parts.
        self._stream: PlainSink | None = None if self._found else PlainSink(output)
        self._streamed = 0

    @staticmethod
    def dir_of(output: Path) -> Path:
        return output.with_name(output.name + ".inferq-parts")

    @staticmethod
    def recorded_chunk_rows(output: Path) -> int | None:
        """The chunk size the interrupted run of ``output`` recorded, if its work directory
        has a readable manifest: a resume that names none goes on with it, whatever the
        default was when that run started (chunk ids and parts depend on it)."""
        try:
            stored = json.loads((ResumableSink.dir_of(output) / "manifest.json").read_text())
        except (OSError, ValueError):
            return None  # none, or unreadable: the sink's own check says which
        rows = stored.get("chunk_rows") if isinstance(stored, dict) else None
        return rows if isinstance(rows, int) and not isinstance(rows, bool) and rows > 0 else None

    def _open(self, resume: bool) -> None:
        path = self.dir / "manifest.json"
        if not self.dir.exists():
            self.dir.mkdir(parents=True)
            parts.write_atomically(path, json.dumps(asdict(self.manifest), indent=2).encode())
            return
        if not resume:
            raise ResumeError(
                f"{self.dir} holds an interrupted run: pass --resume to continue it, "
                "or delete it to start over"
            )
        stored = _upgraded(json.loads(path.read_text()) if path.exists() else None)
        if isinstance(stored, dict) and _only_model_changed(stored, self.manifest):
            before, now = str(stored["model_version"]), self.manifest.model_version
            raise ModelChangedSinceRun(self.dir, before, now)
        if stored != asdict(self.manifest):
            raise ResumeError(
                f"{self.dir} belongs to a different run ({_difference(stored, self.manifest)});"
                " delete it to start over"
            )
        # Rewritten with its part format (an older version's manifest had none): from now
        # on the directory holds results parts, which an older version must not resume.
        parts.write_atomically(path, json.dumps(stored, indent=2).encode())
        for part in self.dir.glob("*.part"):
            # A part cut short or damaged (its checksum is in its name) is scored again.
            if parts.intact(part):
                self._found[parts.field(part, 0)] = part

    def done(self, index: int) -> bool:
        return index in self._found

    def counts(self, index: int) -> tuple[int, int]:
        """Rows scored and rows failed in a finished chunk (kept in its part's name)."""
        return parts.field(self._found[index], 1), parts.field(self._found[index], 2)

    def write(self, index: int, data: Rendered, ok: int, failed: int) -> None:
        self._write_stream(index, data)
        part = data if isinstance(data, bytes) else parts.results_ipc(data)
        path = self.dir / parts.name(index, ok, failed, part)
        parts.write_atomically(path, part)
        self._found[index] = path

    def _write_stream(self, index: int, data: Rendered) -> None:
        if self._stream is None:
            return
        if index != self._streamed:  # out of order: the output is joined from the parts
            self._stream.abandon()
            self._stream = None
            return
        self._stream.write(index, data, 0, 0)
        self._streamed += 1

    def finish(self, chunks: int) -> None:
        """Join parts 0..chunks-1 into the output (atomically), then drop the parts."""
        missing = [i for i in range(chunks) if not self.done(i)]
        if missing:
            raise ResumeError(f"{len(missing)} chunk(s) not scored, first {missing[0]}")
        if self._stream is not None and self._streamed == chunks:
            self._stream.finish(chunks)  # the same bytes as the join's, already written
            shutil.rmtree(self.dir)
            return
        if self._stream is not None:
            self._stream.abandon()
        paths = [self._found[i] for i in range(chunks)]
        tmp = self.output.with_name(self.output.name + ".tmp")
        if self.manifest.output_format == Format.PARQUET:
            parts.join_parquet(paths, tmp, self.inputs)
        else:
            with tmp.open("wb") as out:
                for path in paths:
                    with path.open("rb") as part:
                        shutil.copyfileobj(part, out, 1 << 20)
        # On disk before the parts go: a crash from here on leaves the whole output or
        # the whole set of parts, never neither.
        _fsync(tmp)
        os.replace(tmp, self.output)
        _fsync(self.output.parent)
        shutil.rmtree(self.dir)

    def abandon(self) -> None:
        """Close the output written so far, unfinished (a run that failed or starts over
        must leave no open file behind to flush into the next attempt's)."""
        if self._stream is not None:
            self._stream.abandon()
            self._stream = None

    @staticmethod
    def discard(output: Path) -> None:
        """Drop every part of ``output``'s run (a run that starts over)."""
        shutil.rmtree(ResumableSink.dir_of(output), ignore_errors=True)


class PlainSink:
    """Straight into the output, nothing kept for a resume: the in-process baseline's sink."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self._tmp = output.with_name(output.name + ".tmp")
        self._file: BinaryIO | None = None
        self._parquet: pq.ParquetWriter | None = None

    def done(self, index: int) -> bool:
        return False

    def counts(self, index: int) -> tuple[int, int]:
        raise KeyError(index)

    def write(self, index: int, data: Rendered, ok: int, failed: int) -> None:
        if isinstance(data, pa.Table):
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._tmp, data.schema)
            if data.num_rows or index == 0:
                self._parquet.write_table(data)
            return
        if self._file is None:
            self._file = self._tmp.open("wb")
        self._file.write(data)

    def abandon(self) -> None:
        """Close without renaming: what was written stays a temporary file."""
        self._close()
        self._parquet = self._file = None

    def _close(self) -> None:
        for closable in (self._parquet, self._file):
            if closable is not None:
                closable.close()

    def finish(self, chunks: int) -> None:
        self._close()
        if self._parquet is None and self._file is None:
            self._tmp.write_bytes(b"")
        _fsync(self._tmp)
        os.replace(self._tmp, self.output)
        _fsync(self.output.parent)


def _fsync(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _upgraded(stored: Any) -> Any:
    """A manifest as this version writes it: an older one's, without a part format, holds
    whole parts (joined as they are), and goes on with results parts."""
    if isinstance(stored, dict) and "part_format" not in stored:
        return {**stored, "part_format": parts.PART_FORMAT}
    return stored


def _only_model_changed(stored: dict[str, object], current: Manifest) -> bool:
    same_run = {**stored, "model_version": current.model_version} == asdict(current)
    return same_run and stored.get("model_version") != current.model_version


def _difference(stored: dict[str, object] | None, current: Manifest) -> str:
    if stored is None:
        return "no manifest"
    changed = [k for k, v in asdict(current).items() if stored.get(k) != v]
    return ", ".join(f"{k} changed" for k in changed) or "unreadable manifest"
