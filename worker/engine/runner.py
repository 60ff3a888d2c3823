"""The model thread: takes batches from a BatchQueue and runs one forward pass each.

Stream jobs and bulk chunks share it through the queue's two lanes: ``submit`` cuts a
job's rows to the stream batch size, ``submit(..., bulk=True)`` a chunk's rows to the
bulk pass size (worker.engine.batching decides which goes first).

It only runs the model. Job threads validate and decode before they submit,
and store results after; this thread stacks, pads to a fixed bucket size (so
TensorFlow never meets a new shape), runs, checks N in -> N out, and resolves
every future of the batch, with a result or with the batch's exception.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from inferq.errors import InferenceFailed
from worker.engine.batching import BatchQueue, Pending, QueueClosed

log = logging.getLogger(__name__)


class BatchObserver(Protocol):
    """Told of every forward pass, after its futures are set (worker.metrics does this)."""

    def batch_done(
        self,
        items: Sequence[Pending[Any, Any]],
        started: float,
        rows: int,
        padded: int,
        seconds: float,
    ) -> None: ...

    def batch_failed(self, items: Sequence[Pending[Any, Any]], started: float) -> None: ...


class _Unobserved:
    def batch_done(
        self,
        items: Sequence[Pending[Any, Any]],
        started: float,
        rows: int,
        padded: int,
        seconds: float,
    ) -> None:
        return None

    def batch_failed(self, items: Sequence[Pending[Any, Any]], started: float) -> None:
        return None


class ForwardModel(Protocol):
    """What the runner needs of a model: a name, a version, buckets and a forward pass."""

    name: str
    version: str
    bucket_sizes: tuple[int, ...]

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Outputs for a batch whose first dimension is one of ``bucket_sizes``."""
        ...


@dataclass(frozen=True)
class BatchOutput:
    values: np.ndarray
    batch_id: int
    batch_rows: int
    padded_rows: int
    batch_jobs: int
    wait_ms: float
    inference_ms: float


def bucket_sizes_for(max_rows: int) -> tuple[int, ...]:
    """Powers of two below ``max_rows``, then ``max_rows``: padding at most doubles a batch."""
    sizes = [1 << i for i in range(max_rows.bit_length()) if (1 << i) < max_rows]
    return (*sizes, max_rows)


def bucket_for(rows: int, sizes: tuple[int, ...]) -> int:
    for size in sizes:
        if size >= rows:
            return size
    raise ValueError(f"{rows} rows exceed the largest bucket {sizes[-1]}")


class BatchRunner:
    def __init__(
        self,
        model: ForwardModel,
        max_batch_rows: int,
        max_wait_s: float,
        *,
        bulk_batch_rows: int | None = None,
        bulk_max_delay_s: float = 0.05,
        retries: int = 0,
        backoff_s: float = 0.05,
        observer: BatchObserver | None = None,
    ) -> None:
        bulk_rows = bulk_batch_rows or max_batch_rows
        if model.bucket_sizes[-1] < max(max_batch_rows, bulk_rows):
            raise ValueError("the model's largest bucket is smaller than a batch")
        self.model = model
        self.retries = retries
        self.backoff_s = backoff_s
        self.queue: BatchQueue[np.ndarray, BatchOutput] = BatchQueue(
            max_batch_rows, max_wait_s, bulk_max_rows=bulk_rows, bulk_max_delay_s=bulk_max_delay_s
        )
        self._batch_ids = itertools.count(1)
        self.observer: BatchObserver = observer or _Unobserved()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"runner-{model.name}", daemon=True)

    def start(self) -> BatchRunner:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking items, run what is queued, then end the thread."""
        self.queue.close()
        self._stopping.set()
        self._thread.join(timeout_s)

    def infer(
        self, x: np.ndarray, timeout_s: float, *, bulk: bool = False
    ) -> tuple[np.ndarray, list[BatchOutput]]:
        """Run ``x`` (rows x ...) through the model, split over as many batches as needed."""
        parts = self.wait(self.submit(x, bulk=bulk), timeout_s)
        return np.concatenate([p.values for p in parts]), parts

    def wait(self, futures: list[Future[BatchOutput]], timeout_s: float) -> list[BatchOutput]:
        """The outputs of ``submit``'s futures, in order; InferenceFailed after ``timeout_s``."""
        try:
            return [f.result(timeout=timeout_s) for f in futures]
        except FutureTimeout:
            raise InferenceFailed(f"no forward pass within {timeout_s} s") from None

    def submit(self, x: np.ndarray, *, bulk: bool = False) -> list[Future[BatchOutput]]:
        """Queue ``x``'s rows in pieces of at most a batch (a bulk pass with ``bulk``)."""
        step = self.queue.bulk_max_rows if bulk else self.queue.max_rows
        try:
            return [
                self.queue.put(x[i : i + step], len(x[i : i + step]), bulk=bulk)
                for i in range(0, len(x), step)
            ]
        except QueueClosed:
            raise InferenceFailed("this worker is shutting down") from None

    def _loop(self) -> None:
        while not (self._stopping.is_set() and len(self.queue) == 0):
            batch = self.queue.next_batch(idle_timeout_s=0.5)
            if batch:
                self.run_batch(batch)

    def run_batch(self, batch: list[Pending[np.ndarray, BatchOutput]]) -> None:
        """Resolve every future in ``batch``: never leave one pending, never swallow an error.

        The observer (metrics) hears of the pass after the futures are set, so no job
        waits for it."""
        started = time.monotonic()
        try:
            outputs, padded = self._forward_retrying([item.payload for item in batch])
        except Exception as exc:
            log.exception("batch of %d jobs failed in model %s", len(batch), self.model.name)
            error = (
                exc
                if isinstance(exc, InferenceFailed)
                else InferenceFailed(f"{type(exc).__name__}: {exc}")
            )
            for item in batch:
                item.future.set_exception(error)
            self.observer.batch_failed(batch, started)
            return
        elapsed_s = time.monotonic() - started
        elapsed_ms = elapsed_s * 1000
        batch_id, offset, rows = next(self._batch_ids), 0, sum(item.rows for item in batch)
        for item in batch:
            wait_ms = (started - item.queued_at) * 1000
            values = outputs[offset : offset + item.rows]
            offset += item.rows
            item.future.set_result(
                BatchOutput(values, batch_id, rows, padded, len(batch), wait_ms, elapsed_ms)
            )
        self.observer.batch_done(batch, started, rows, padded, elapsed_s)

    def _forward_retrying(self, payloads: list[np.ndarray]) -> tuple[np.ndarray, int]:
        """A forward pass that raised is tried again (a device hiccup, an allocation that
        failed under memory pressure) with doubling waits, ``retries`` times at most; the
        futures are set once, after the last attempt, so no job can get two answers."""
        for attempt in itertools.count():
            try:
                return self._forward(payloads)
            except InferenceFailed:
                raise  # a wrong number of outputs: the same input fails the same way
            except Exception as exc:
                if attempt >= self.retries:
                    raise InferenceFailed(
                        f"{type(exc).__name__}: {exc} (after {attempt + 1} attempts)"
                    ) from exc
                delay_s = self.backoff_s * 2**attempt
                log.warning("forward pass failed (%s); retrying in %.2f s", exc, delay_s)
                time.sleep(delay_s)
        raise AssertionError("unreachable")

    def _forward(self, payloads: list[np.ndarray]) -> tuple[np.ndarray, int]:
        # One payload (a bulk pass is one piece of one chunk) goes as it is: the forward
        # pass copies it into a tensor anyway.
        x = payloads[0] if len(payloads) == 1 else np.concatenate(payloads)
        padded = bucket_for(len(x), self.model.bucket_sizes)
        if padded > len(x):
            x = np.concatenate([x, np.zeros((padded - len(x), *x.shape[1:]), dtype=x.dtype)])
        out = np.asarray(self.model.forward(x))
        if out.shape[0] != padded:
            raise InferenceFailed(f"model returned {out.shape[0]} outputs for {padded} inputs")
        return out[: sum(len(p) for p in payloads)], padded
