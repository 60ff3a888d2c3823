"""`inferq score-images`: a directory (walked recursively) or a manifest of image
paths through the vision workers, one JSON line per image, in a stable order.

Images go as ordinary classify jobs (bytes read here, so workers need no shared
file system). They are grouped in chunks only for back-pressure and resume: a
chunk's lines are written once all its images are answered, as a part file
(producer.bulk.sinks), so a killed run resumed with ``resume=True`` classifies
only the chunks that are missing.
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

from inferq.core.contract import ClassifyResult
from inferq.errors import InferqError
from producer.bulk.formats import FormatError
from producer.bulk.report import Progress, Summary
from producer.bulk.sinks import Manifest, ResumableSink
from producer.bulk.window import Window
from producer.client import Client
from producer.handles import Handle

# Errors of the workers rather than of the image: the chunk is left unscored (not
# written), so that --resume tries it again.
RETRYABLE = frozenset({"timeout", "worker_error", "model_unavailable", "inference_failed"})
# The formats workers decode (inferq.core.images.DEFAULT_FORMATS); TIFF is refused there.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"})
Outcome = Handle[ClassifyResult] | InferqError
RESEND_AFTER_S = 30.0  # sent again if Redis has lost it (docs/delivery.md)
_Submitted = tuple[int, list[tuple[str, Outcome]]]  # a chunk's index and its images' jobs


@dataclass(frozen=True)
class ImageOptions:
    chunk_images: int = 64
    in_flight: int = 4
    top_k: int = 5
    timeout_s: float = 600.0
    resume: bool = False


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


def listing_digest(images: list[tuple[str, Path]]) -> str:
    """Names, sizes and modification times: a changed image set gives other chunk ids."""
    digest = hashlib.sha256()
    for name, path in images:
        try:
            stat = path.stat()
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{name}\0missing\n".encode())
    return digest.hexdigest()


def score_images(
    client: Client, source: Path, output: Path, options: ImageOptions, every_s: float = 10.0
) -> Summary:
    images = list_images(source)
    started = time.monotonic()
    manifest = Manifest(listing_digest(images), options.chunk_images, "jsonl", "classifier")
    sink = ResumableSink(output, manifest, resume=options.resume)
    progress = Progress(len(images), "images", every_s=every_s)
    summary = Summary(output, unit="images")
    finish = functools.partial(_finish, sink, summary, progress, options.timeout_s)
    window: Window[_Submitted] = Window(options.in_flight, finish)
    chunks = list(_chunks(images, options.chunk_images))
    try:
        for index, chunk in enumerate(chunks):
            if sink.done(index):
                _count(summary, progress, *sink.counts(index))
                continue
            window.add((index, [(name, _submit(client, path, options)) for name, path in chunk]))
        window.drain()
    finally:
        progress.close()
    summary.chunks = len(chunks)
    if not summary.unscored_chunks:
        sink.finish(len(chunks))
    summary.seconds = time.monotonic() - started
    return summary


def _chunks(images: list[tuple[str, Path]], size: int) -> Iterator[list[tuple[str, Path]]]:
    for start in range(0, len(images), size):
        yield images[start : start + size]


def _submit(client: Client, path: Path, options: ImageOptions) -> Outcome:
    try:
        return client.submit_image(path.read_bytes(), top_k=options.top_k)
    except OSError as exc:
        return InferqError({"code": "unreadable_file", "message": f"{path}: {exc.strerror}"})


def _finish(
    sink: ResumableSink,
    summary: Summary,
    progress: Progress,
    timeout_s: float,
    submitted: _Submitted,
) -> None:
    index, chunk = submitted
    lines, failed = [], 0
    first_errors = []
    for name, outcome in chunk:
        record: dict[str, Any] = {"path": name, "labels": None, "model": None, "error": None}
        try:
            if isinstance(outcome, InferqError):
                raise outcome
            result = outcome.wait(timeout_s, resend_after_s=RESEND_AFTER_S)
            record["labels"] = [label.model_dump() for label in result.labels]
            record["model"] = result.model.model_dump()
        except InferqError as exc:
            if exc.info.get("code") in RETRYABLE:
                summary.unscored_chunks += 1
                summary.first_chunk_error = summary.first_chunk_error or str(exc)
                return
            failed += 1
            record["error"] = f"{exc.info.get('code')}: {exc.message}"
            first_errors.append(f"{name}: {record['error']}")
        lines.append(json.dumps(record, separators=(",", ":")) + "\n")
    summary.first_row_errors.extend(first_errors[: 5 - len(summary.first_row_errors)])
    sink.write(index, "".join(lines).encode(), len(chunk) - failed, failed)
    _count(summary, progress, len(chunk) - failed, failed)


def _count(summary: Summary, progress: Progress, ok: int, failed: int) -> None:
    summary.count(ok, failed)
    progress.advance(ok + failed)
