"""`inferq score-images`: a directory (walked recursively) or a manifest of image
paths through the vision workers, one JSON line per image, in a stable order.

A chunk of images travels as one ``classify_images`` message (bytes read here, so
workers need no shared file system): at most ``chunk_images`` images and, past the
first, ``chunk_bytes`` of files. One message and one result per chunk instead of
per image is what lets a bulk run go as fast as a script in the worker's process
(docs/benchmarks.md). A chunk's lines are written once it is answered, as a part
file (producer.bulk.sinks), so a killed run resumed with ``resume=True``
classifies only the chunks that are missing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferq.core.contract import ClassifyChunkResult, ImageOutcome, JobError
from inferq.errors import InferqError, ModelVersionMismatch
from producer.bulk.formats import FormatError
from producer.bulk.one_model import OnNewModel, on_one_model
from producer.bulk.report import Progress, Summary, process_cpu_s
from producer.bulk.sinks import Manifest, ResumableSink
from producer.bulk.window import Window
from producer.client import Blob, Client
from producer.handles import Handle

# Errors of the workers rather than of the image: the chunk is left unscored (not
# written), so that --resume tries it again.
RETRYABLE = frozenset({"timeout", "worker_error", "model_unavailable", "inference_failed"})
# Files from this size on go as Redis blobs; smaller ones inline (base64): for a 65 kB
# photo the blob's own round trip costs more than the base64 it saves.
BLOB_MIN_BYTES = 256 * 1024
# The formats workers decode (inferq.core.images.DEFAULT_FORMATS); TIFF is refused there.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"})
RESEND_AFTER_S = 30.0  # sent again if Redis has lost it (docs/delivery.md)


@dataclass
class _Chunk:
    """A submitted chunk: its one job (None if no file could be read), each image's index
    in that job or the error it met here, and the blobs to remove once it is answered."""

    handle: Handle[ClassifyChunkResult] | None
    outcomes: list[tuple[str, int | InferqError]]
    blobs: list[Blob]


@dataclass(frozen=True)
class ImageOptions:
    chunk_images: int = 64
    in_flight: int = 4
    top_k: int = 5
    timeout_s: float = 600.0
    resume: bool = False
    # File bytes per message, at most (one image may be larger): two or three phone
    # photos, a whole chunk of ImageNet-size ones. Larger messages cost more per byte:
    # kombu re-encodes each delivered message whole for its unacked copy in Redis.
    chunk_bytes: int = 8 * 2**20
    # The worker's INFERQ_IMAGE_ROOT, as this host sees it (a shared or the same file
    # system): files under it are sent as paths, not bytes.
    worker_root: Path | None = None
    # A roll-out of the classifier mid-run: start over on it, or stop (producer.bulk.one_model).
    on_new_model: OnNewModel = "restart"


def list_images(source: Path) -> list[tuple[str, Path]]:
    """(name in the output, file) pairs: a directory's image files sorted by relative path,
    or a manifest's lines in their order (relative paths are from the manifest's folder)."""
    if source.is_dir():
        files = [p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
        return sorted((p.relative_to(source).as_posix(), p) for p in files if p.is_file())
    if not source.is_file():
        raise FormatError(f"{source} is neither a directory nor a manifest file")
    lines = [line.strip() for line in source.read_text().splitlines()]
    return [(line, source.parent / line) for line in lines if line and not line.startswith("#")]


def listing_digest(
    images: list[tuple[str, Path]], chunk_bytes: int, root: Path | None = None
) -> str:
    """Names, sizes and modification times, and the chunk byte limit: a changed image
    set (or chunking) gives other chunk ids."""
    digest = hashlib.sha256(f"chunk_bytes={chunk_bytes} root={root}\n".encode())
    for name, path in images:
        digest.update(f"{name}\0{_size(path)}\0{_mtime_ns(path)}\n".encode())
    return digest.hexdigest()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def score_images(
    client: Client, source: Path, output: Path, options: ImageOptions, every_s: float = 10.0
) -> Summary:
    """Classify ``source``'s images into ``output`` with one classifier version, starting
    over on the new one if the workers' model changes mid-run."""
    version = [client.classifier_info(options.timeout_s).model.version]

    def refresh() -> str:
        version[0] = client.classifier_info(options.timeout_s).model.version
        return version[0]

    def attempt() -> Summary:
        return _score_once(client, source, output, options, every_s, version[0])

    return on_one_model(output, options.on_new_model, attempt, refresh)


def _score_once(
    client: Client,
    source: Path,
    output: Path,
    options: ImageOptions,
    every_s: float,
    version: str,
) -> Summary:
    images = list_images(source)
    started, cpu_started = time.monotonic(), process_cpu_s()
    manifest = Manifest(
        listing_digest(images, options.chunk_bytes, options.worker_root),
        options.chunk_images,
        "jsonl",
        version,
    )
    sink = ResumableSink(output, manifest, resume=options.resume)
    progress = Progress(len(images), "images", every_s=every_s)
    summary = Summary(output, unit="images")
    finish = functools.partial(_finish, client, sink, summary, progress, options.timeout_s, version)
    window: Window[tuple[int, _Chunk]] = Window(options.in_flight, finish)
    most = min(options.chunk_images, client.settings.max_chunk_images)
    root = options.worker_root.resolve() if options.worker_root else None
    chunks = list(chunk_images(images, most, options.chunk_bytes, root))
    try:
        try:
            for index, chunk in enumerate(chunks):
                if sink.done(index):
                    _count(summary, progress, *sink.counts(index))
                    continue
                # Stored images outlive the wait for their chunk by a minute, no more.
                ttl_s = options.timeout_s + 60
                window.add((index, _submit(client, chunk, options.top_k, root, ttl_s, version)))
            window.drain()
        finally:
            progress.close()
        summary.chunks = len(chunks)
        if not summary.unscored_chunks:
            sink.finish(len(chunks))
    finally:
        # Closed now, not whenever collected: a run that starts over on a new model
        # writes the same OUT.tmp, and a late flush of this one's buffer mixed the two.
        sink.abandon()
    summary.seconds = time.monotonic() - started
    summary.cpu_s = round(process_cpu_s() - cpu_started, 3)
    return summary


def chunk_images(
    images: list[tuple[str, Path]], most: int, max_bytes: int, root: Path | None = None
) -> Iterator[list[tuple[str, Path]]]:
    """Consecutive images, at most ``most`` a chunk and, past its first image, at most
    ``max_bytes`` of files sent as bytes (sizes as listed: the same chunks on a resumed
    run); files under ``root`` go as paths and weigh nothing."""
    chunk: list[tuple[str, Path]] = []
    size = 0
    for name, path in images:
        nbytes = 0 if _under(path, root) is not None else max(_size(path), 0)
        if chunk and (len(chunk) >= most or size + nbytes > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append((name, path))
        size += nbytes
    if chunk:
        yield chunk


def _under(path: Path, root: Path | None) -> str | None:
    """``path`` relative to the worker's image root, if it lies under it."""
    if root is None:
        return None
    resolved = path.resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else None


def _submit(
    client: Client,
    chunk: list[tuple[str, Path]],
    top_k: int,
    root: Path | None,
    ttl_s: float,
    version: str,
) -> _Chunk:
    """One classify_images message for the chunk's readable files, stored in Redis as
    blobs (or sent as paths under ``root``); the rest fail here."""
    read: list[bytes | str] = []
    outcomes: list[tuple[str, int | InferqError]] = []
    for name, path in chunk:
        try:
            relative = _under(path, root)
            read.append(relative if relative is not None else path.read_bytes())
            outcomes.append((name, len(read) - 1))
        except OSError as exc:
            error = {"code": "unreadable_file", "message": f"{path}: {exc.strerror}"}
            outcomes.append((name, InferqError(error)))
    large = [data for data in read if isinstance(data, bytes) and len(data) >= BLOB_MIN_BYTES]
    blobs = iter(client.store_images(large, ttl_s)) if large else iter([])
    images = [
        next(blobs) if isinstance(data, bytes) and len(data) >= BLOB_MIN_BYTES else data
        for data in read
    ]
    handle = client.submit_images(images, top_k=top_k, model_version=version) if images else None
    return _Chunk(handle, outcomes, [i for i in images if isinstance(i, Blob)])


def _finish(
    client: Client,
    sink: ResumableSink,
    summary: Summary,
    progress: Progress,
    timeout_s: float,
    version: str,
    submitted: tuple[int, _Chunk],
) -> None:
    index, chunk = submitted
    try:
        _write(sink, summary, progress, timeout_s, version, index, chunk)
    finally:
        client.drop_images(chunk.blobs)


def _write(
    sink: ResumableSink,
    summary: Summary,
    progress: Progress,
    timeout_s: float,
    version: str,
    index: int,
    chunk: _Chunk,
) -> None:
    handle, outcomes = chunk.handle, chunk.outcomes
    results: list[ImageOutcome] = []
    model = None
    if handle is not None:
        try:
            answer = handle.wait(timeout_s, resend_after_s=RESEND_AFTER_S)
            if answer.model.version != version:  # one model per output, whoever answered
                raise ModelVersionMismatch.between(version, answer.model.version)
            results, model = answer.results, answer.model.model_dump()
        except ModelVersionMismatch:
            raise  # the run stops here: its output would hold two models
        except InferqError as exc:
            if exc.info.get("code") in RETRYABLE:
                summary.unscored_chunks += 1
                summary.first_chunk_error = summary.first_chunk_error or str(exc)
                return
            error = JobError(code=str(exc.info.get("code")), message=exc.message)
            results = [ImageOutcome(labels=None, error=error)] * handle.rows
    lines, first_errors = [], []
    for name, outcome in outcomes:
        record = _record(name, outcome if isinstance(outcome, InferqError) else results[outcome])
        if record["labels"] is not None:
            record["model"] = model
        else:
            first_errors.append(f"{name}: {record['error']}")
        lines.append(json.dumps(record, separators=(",", ":")) + "\n")
    failed = len(first_errors)
    summary.first_row_errors.extend(first_errors[: 5 - len(summary.first_row_errors)])
    sink.write(index, "".join(lines).encode(), len(outcomes) - failed, failed)
    _count(summary, progress, len(outcomes) - failed, failed)


def _record(name: str, outcome: ImageOutcome | InferqError) -> dict[str, Any]:
    """One output line: labels, or ``error`` as "code: message" (as a stream job's)."""
    record: dict[str, Any] = {"path": name, "labels": None, "model": None, "error": None}
    if isinstance(outcome, InferqError):
        record["error"] = f"{outcome.info.get('code')}: {outcome.message}"
    elif outcome.error is not None or outcome.labels is None:
        error = outcome.error or JobError(code="internal_error", message="no labels, no error")
        record["error"] = f"{error.code}: {error.message}"
    else:
        record["labels"] = [label.model_dump() for label in outcome.labels]
    return record


def _count(summary: Summary, progress: Progress, ok: int, failed: int) -> None:
    summary.count(ok, failed)
    progress.advance(ok + failed)
