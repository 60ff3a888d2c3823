"""``inferq.classify_image`` and ``inferq.classify_images``: images (base64 bytes or files
under the image root) in, top-k labels out.

Images are decoded within the process's decode budget (worker.jobs.decoding), JPEGs
at the reduced size the model needs. Most jobs take these pieces through the direct
path (worker.celeryapp.direct_images), decoded on its decoding threads; ``run`` and
``run_chunk`` do the whole job in one pool thread (ETA jobs, a prefork child).

A chunk (``classify_images``) is many images in one message, for bulk scoring: each
image gets its own labels or its own error, and a bad image never fails the chunk.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np

from inferq.core.contract import ClassifyChunkPayload
from inferq.errors import InferenceFailed, InferqError, InvalidInput, ModelVersionMismatch
from worker.engine.runner import BatchOutput
from worker.jobs.checks import batch_info, to_ms, top_k
from worker.jobs.decoding import DecodeBudget, model_input
from worker.jobs.image_source import BlobReader, image_bytes
from worker.loading.registry import ServedClassifier


def image_input(
    served: ServedClassifier, image_b64: Any, path: Any, budget: DecodeBudget
) -> np.ndarray:
    """One image of a job as the model's input, shape (1, height, width, 3)."""
    field, data = image_bytes(image_b64, path, served.settings)
    return model_input(served, data, field, budget)[None]


def result(
    served: ServedClassifier, k: int, part: BatchOutput, started: float, decode_s: float
) -> dict[str, Any]:
    """The ClassifyResult of a job whose image ran in ``part``."""
    return {
        "labels": [dict(p) for p in served.labels.top_k(part.values[0], k)],
        "model": {"name": served.name, "version": served.version},
        "batch": batch_info([part]),
        "timings_ms": {
            "decode_ms": to_ms(decode_s),
            "batch_wait_ms": round(part.wait_ms, 3),
            "inference_ms": round(part.inference_ms, 3),
            "total_ms": to_ms(time.monotonic() - started),
        },
    }


def run(
    served: ServedClassifier, image_b64: Any, path: Any, k: Any, budget: DecodeBudget
) -> dict[str, Any]:
    """The whole job in the calling thread: decode, queue, wait for the pass."""
    started = time.monotonic()
    k = top_k(k)
    x = image_input(served, image_b64, path, budget)
    decoded = time.monotonic()
    (future,) = served.runner.submit(x)
    (part,) = served.runner.wait([future], served.timeout_s)
    return result(served, k, part, started, decoded - started)


# -- chunks: many images in one message ------------------------------------------------


def chunk_items(served: ServedClassifier, images: Any) -> list[Any]:
    """The chunk's image entries, after the checks of the chunk as a whole."""
    limit = served.settings.max_chunk_images
    if not isinstance(images, list) or not images:
        raise InvalidInput.single("images", "not_a_list", "images must be a non-empty list")
    if len(images) > limit:
        message = f"{len(images)} images in one chunk; the limit is {limit}"
        raise InvalidInput.single("images", "too_many_images", message)
    return images


def item_input(
    served: ServedClassifier, item: Any, budget: DecodeBudget, read_blob: BlobReader | None
) -> np.ndarray:
    """One entry of a chunk ({"image_b64"}, {"path"} or {"blob"}) as the model's input."""
    if not isinstance(item, dict) or set(item) - set(ClassifyChunkPayload.item_fields()):
        message = 'each image is {"image_b64": ...}, {"path": ...} or {"blob": ...}'
        raise InvalidInput.single("images", "image_source", message)
    args = item.get("image_b64"), item.get("path"), served.settings
    field, data = image_bytes(*args, item.get("blob"), read_blob)
    return model_input(served, data, field, budget)[None]


def item_outcome(
    served: ServedClassifier, k: int, outcome: BatchOutput | BaseException
) -> dict[str, Any]:
    """One image's entry of a ClassifyChunkResult: labels, or the error that image met."""
    if isinstance(outcome, BaseException):
        return {"labels": None, "error": error_info(outcome)}
    return {"labels": [dict(p) for p in served.labels.top_k(outcome.values[0], k)], "error": None}


def error_info(exc: BaseException) -> dict[str, Any]:
    """An exception as the contract's JobError (``internal_error`` for a bug)."""
    if isinstance(exc, InferqError):
        return {"code": exc.info.get("code"), "message": exc.message, "errors": exc.details}
    return {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}", "errors": []}


def chunk_result(
    served: ServedClassifier,
    k: int,
    outcomes: Sequence[BatchOutput | BaseException],
    started: float,
) -> dict[str, Any]:
    """The ClassifyChunkResult of a chunk whose images ended in ``outcomes``, in order."""
    batches = {o.batch_id for o in outcomes if isinstance(o, BatchOutput)}
    return {
        "results": [item_outcome(served, k, o) for o in outcomes],
        "model": {"name": served.name, "version": served.version},
        "passes": len(batches),
        "timings_ms": {"total_ms": to_ms(time.monotonic() - started)},
    }


def check_version(served: ServedClassifier, expected: Any) -> None:
    """A chunk made for another classifier version is refused: one model per output."""
    if expected is not None and expected != served.version:
        raise ModelVersionMismatch.between(str(expected)[:64], served.version)


def info(served: ServedClassifier) -> dict[str, Any]:
    """The serving classifier: name, version, how many classes."""
    model = {"name": served.name, "version": served.version}
    return {"model": model, "labels": len(served.labels)}


def run_chunk(
    served: ServedClassifier,
    images: Any,
    k: Any,
    budget: DecodeBudget,
    read_blob: BlobReader | None,
    model_version: Any = None,
) -> dict[str, Any]:
    """A whole chunk in the calling thread: each image decoded and queued, then waited for."""
    started = time.monotonic()
    check_version(served, model_version)
    k = top_k(k)
    pending: list[Future[BatchOutput] | BaseException] = []
    for item in chunk_items(served, images):
        try:
            (future,) = served.runner.submit(item_input(served, item, budget, read_blob))
            pending.append(future)
        except InferqError as exc:
            pending.append(exc)
    outcomes = [_outcome(p, served.timeout_s) for p in pending]
    return chunk_result(served, k, outcomes, started)


def _outcome(
    pending: Future[BatchOutput] | BaseException, timeout_s: float
) -> BatchOutput | BaseException:
    if isinstance(pending, BaseException):
        return pending
    try:
        return pending.result(timeout=timeout_s)
    except FutureTimeout:
        return InferenceFailed(f"no forward pass within {timeout_s} s")
    except Exception as exc:  # InferenceFailed from the runner
        return exc
