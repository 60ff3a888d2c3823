"""Image jobs skip Celery's pool too: consumer -> decode stage -> batch queue -> finisher.

The consumer thread, after Celery's own strategy (revoked, expires, events, ETA),
checks the job's arguments and hands its image(s) to the decode stage
(worker.jobs.decoding: a thread per core, decoding within the process's budget,
at most a few batches of decoded images waiting for the model), and goes back to
fetching. A decoding thread reads and decodes the image and puts it on the batch
queue; the runner runs the pass; the finisher stores every answer, then acks: the
same guarantees as small predict jobs (worker.celeryapp.direct), warm shutdown
included.

``classify_images`` (a chunk: many images in one message, for bulk scoring) holds
one job whose images are decoded side by side on the decode stage; its answer
waits for all of them, and an image that fails gets its own error in the chunk's
result while the others are labelled.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

from inferq.core.contract import ClassifyChunkPayload, ClassifyPayload
from inferq.errors import InferqError
from worker.celeryapp.direct import DirectPath, answer_when_done, fail
from worker.celeryapp.finisher import Finisher, HeldJob
from worker.celeryapp.state import WorkerState
from worker.engine.runner import BatchOutput
from worker.jobs import classify
from worker.jobs.checks import Payload, bind_arguments, top_k
from worker.loading.registry import ServedClassifier

log = logging.getLogger("inferq.direct")


class _DirectImages(DirectPath):
    kind = "classifier"

    def model_name(self, state: WorkerState) -> str:
        return state.models.classifier().name

    @staticmethod
    def bound(job: HeldJob, payload: Payload) -> tuple[dict[str, Any], int]:
        """The job's arguments by name (checked on the consumer thread), and its top_k."""
        args = bind_arguments(payload, job.request.args, job.request.kwargs)
        return args, top_k(args["top_k"])


class DirectClassify(_DirectImages):
    """``classify_image``: one image, decoded on the decode stage."""

    def start(self, job: HeldJob, state: WorkerState, finisher: Finisher) -> None:
        served = state.models.classifier()
        args, k = self.bound(job, ClassifyPayload)
        decode = functools.partial(_decode_image, state, served, job, finisher, args, k)
        state.decoder().submit(decode)


def _decode_image(
    state: WorkerState,
    served: ServedClassifier,
    job: HeldJob,
    finisher: Finisher,
    args: dict[str, Any],
    k: int,
) -> Future[BatchOutput] | None:
    """On a decoding thread: the image queued for the model, or the job answered."""
    try:
        x = classify.image_input(served, args["image_b64"], args["path"], state.decode_budget)
        decode_s = time.monotonic() - job.started
        job.make_result = functools.partial(_image_result, served, k, job.started, decode_s)
        (future,) = served.runner.submit(x)
    except Exception as exc:
        fail(job, finisher, exc)
        return None
    answer_when_done(job, finisher, future, served.timeout_s)
    return future


def _image_result(
    served: ServedClassifier, k: int, started: float, decode_s: float, part: BatchOutput
) -> dict[str, Any]:
    return classify.result(served, k, part, started, decode_s)


class DirectClassifyChunk(_DirectImages):
    """``classify_images``: a chunk's images decoded side by side, one answer for all."""

    def start(self, job: HeldJob, state: WorkerState, finisher: Finisher) -> None:
        served = state.models.classifier()
        args, k = self.bound(job, ClassifyChunkPayload)
        classify.check_version(served, args["model_version"])
        items = classify.chunk_items(served, args["images"])
        job.make_result = functools.partial(classify.chunk_result, served, k, started=job.started)
        gathered = _Gathered(len(items), job, finisher, served.timeout_s)
        for index, item in enumerate(items):
            decode = functools.partial(_decode_item, state, served, item, gathered, index)
            state.decoder().submit(decode)


def _decode_item(
    state: WorkerState, served: ServedClassifier, item: Any, gathered: _Gathered, index: int
) -> Future[BatchOutput] | None:
    """On a decoding thread: one image of a chunk queued, or its own error recorded."""
    try:
        x = classify.item_input(served, item, state.decode_budget, state.read_blob)
        (future,) = served.runner.submit(x)
    except InferqError as exc:
        gathered.put(index, exc)
        return None
    except Exception as exc:  # a bug: this image's error, the chunk goes on
        log.exception("job=%s: image %d could not be queued", gathered.job.request.id, index)
        gathered.put(index, exc)
        return None
    gathered.put(index, future)
    return future


class _Gathered:
    """A chunk's images as they are queued; once all are, the job waits for one future
    that resolves, in order, to each image's output or its error."""

    def __init__(self, count: int, job: HeldJob, finisher: Finisher, timeout_s: float) -> None:
        self.job = job
        self._finisher = finisher
        self._timeout_s = timeout_s
        self._slots: list[Future[BatchOutput] | BaseException | None] = [None] * count
        self._unqueued = count
        self._unfinished = count
        self._all: Future[list[BatchOutput | BaseException]] = Future()
        self._lock = threading.Lock()

    def put(self, index: int, queued: Future[BatchOutput] | BaseException) -> None:
        with self._lock:
            self._slots[index] = queued
            self._unqueued -= 1
            last = self._unqueued == 0
        if isinstance(queued, BaseException):
            self._one_done()
        else:
            queued.add_done_callback(lambda _: self._one_done())
        if last:  # from now on the deadline counts: every image is in the batch queue
            answer_when_done(self.job, self._finisher, self._all, self._timeout_s)

    def _one_done(self) -> None:
        with self._lock:
            self._unfinished -= 1
            if self._unfinished:
                return
        self._all.set_result([_outcome(slot) for slot in self._slots])


def _outcome(slot: Future[BatchOutput] | BaseException | None) -> BatchOutput | BaseException:
    assert slot is not None
    if isinstance(slot, BaseException):
        return slot
    exc = slot.exception(timeout=0)
    return exc if exc is not None else slot.result(timeout=0)
