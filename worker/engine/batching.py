"""The batch queue: put an item, get a future; a consumer takes batches.

One job only: decide which queued items go into the next forward pass. Two lanes:

* **stream** items (jobs someone waits on) go first. A stream batch is released
  when it is full (``max_rows``) or when ``max_wait_s`` has passed since its *first*
  item was queued, on a monotonic clock, so a lone job at low traffic waits at most
  ``max_wait_s``; and at once when bulk rows wait too, since the model would idle
  while the stream batch filled.
* **bulk** items (a chunk's rows, cut to ``bulk_max_rows``) run only when no stream
  item waits, as soon as the model is free: their passes are sized for throughput,
  and a stream job arriving mid-pass waits for one bulk pass at most. So that a
  steady stream cannot starve them, bulk gets a pass at least every
  ``bulk_max_delay_s`` while its items wait.

Metrics, the model and Celery live elsewhere.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class QueueClosed(RuntimeError):
    """The queue was closed; no more items are accepted."""


@dataclass
class Pending(Generic[T, R]):
    payload: T
    rows: int
    queued_at: float
    future: Future[R] = field(default_factory=Future)
    bulk: bool = False


class _Lane(Generic[T, R]):
    """Items of one lane in arrival order, and their row count."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.items: deque[Pending[T, R]] = deque()
        self.rows = 0

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def full(self) -> bool:
        return self.rows >= self.max_rows

    def append(self, item: Pending[T, R]) -> None:
        self.items.append(item)
        self.rows += item.rows

    def take(self) -> list[Pending[T, R]]:
        """Whole items from the front, at most ``max_rows`` rows (never split)."""
        batch: list[Pending[T, R]] = []
        rows = 0
        while self.items and rows + self.items[0].rows <= self.max_rows:
            item = self.items.popleft()
            rows += item.rows
            batch.append(item)
        self.rows -= rows
        return batch


class BatchQueue(Generic[T, R]):
    def __init__(
        self,
        max_rows: int,
        max_wait_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        bulk_max_rows: int | None = None,
        bulk_max_delay_s: float = 0.05,
    ) -> None:
        bulk_rows = max_rows if bulk_max_rows is None else bulk_max_rows
        if min(max_rows, bulk_rows) < 1 or max_wait_s < 0 or bulk_max_delay_s < 0:
            raise ValueError("max_rows must be >= 1, and max_wait_s and bulk_max_delay_s >= 0")
        self.max_rows = max_rows
        self.bulk_max_rows = bulk_rows
        self.max_wait_s = max_wait_s
        self.bulk_max_delay_s = bulk_max_delay_s
        self._clock = clock
        self._stream: _Lane[T, R] = _Lane(max_rows)
        self._bulk: _Lane[T, R] = _Lane(bulk_rows)
        self._bulk_due_at = math.inf  # when bulk gets a pass even with stream items waiting
        self._stream_now = False  # flush_stream: the waiting stream batch goes at once
        self._closed = False
        self._cond = threading.Condition()

    def put(self, payload: T, rows: int, *, bulk: bool = False) -> Future[R]:
        """Queue one item of ``rows`` rows (1..the lane's max); its future resolves with
        its output."""
        lane = self._bulk if bulk else self._stream
        if not 1 <= rows <= lane.max_rows:
            raise ValueError(f"an item must have 1..{lane.max_rows} rows, not {rows}")
        item: Pending[T, R] = Pending(payload, rows, self._clock(), bulk=bulk)
        with self._cond:
            if self._closed:
                raise QueueClosed("the batch queue is closed")
            if bulk and not lane:
                self._bulk_due_at = item.queued_at + self.bulk_max_delay_s
            lane.append(item)
            # Wake the consumer only when it has something new to decide: a first item
            # starts the wait, a full batch ends it, bulk rows end a stream batch's wait.
            # Waking it on every stream put costs a context switch per job for nothing.
            if bulk or len(lane.items) == 1 or lane.full:
                self._cond.notify_all()
        return item.future

    def next_batch(self, idle_timeout_s: float | None = None) -> list[Pending[T, R]]:
        """Block until a batch is due and return it (whole items of one lane).

        Returns an empty list when ``idle_timeout_s`` passes with nothing queued,
        or when the queue is closed and drained.
        """
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._stream or self._bulk or self._closed, idle_timeout_s
            ):
                return []
            while True:
                now = self._clock()
                lane, wait_s = self._due(now)
                if lane is not None:
                    return self._take(lane, now)
                if wait_s is None:
                    return []  # closed and drained
                self._cond.wait(wait_s)

    def flush_stream(self) -> None:
        """Let the stream batch now waiting go without waiting out ``max_wait_s``: its
        caller knows no more items can join it (the broker's queues are empty). A no-op
        when no stream item waits."""
        with self._cond:
            if self._stream:
                self._stream_now = True
                self._cond.notify_all()

    def close(self) -> None:
        """Refuse new items; queued ones are still handed out by next_batch."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._stream.items) + len(self._bulk.items)

    def _due(self, now: float) -> tuple[_Lane[T, R] | None, float | None]:
        """The lane whose batch goes now, or how long to wait for the stream batch."""
        stream, bulk = self._stream, self._bulk
        if bulk and (not stream or now >= self._bulk_due_at):
            return bulk, None
        if not stream:
            return None, None
        deadline = stream.items[0].queued_at + self.max_wait_s
        if bulk or stream.full or self._closed or self._stream_now or now >= deadline:
            return stream, None
        return None, deadline - now

    def _take(self, lane: _Lane[T, R], now: float) -> list[Pending[T, R]]:
        batch = lane.take()
        if lane is self._stream:
            self._stream_now = False
        if lane is self._bulk:
            self._bulk_due_at = now + self.bulk_max_delay_s if lane else math.inf
        return batch
