"""The batch queue: put an item, get a future; a consumer takes batches.

One job only. A batch is released when it is full (``max_rows``) or when
``max_wait_s`` has passed since its *first* item was queued, measured on a
monotonic clock, so a lone job at low traffic waits at most ``max_wait_s``.
Metrics, the model and Celery live elsewhere.
"""

from __future__ import annotations

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


class BatchQueue(Generic[T, R]):
    def __init__(
        self, max_rows: int, max_wait_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_rows < 1 or max_wait_s < 0:
            raise ValueError("max_rows must be >= 1 and max_wait_s >= 0")
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._items: deque[Pending[T, R]] = deque()
        self._rows = 0
        self._closed = False
        self._cond = threading.Condition()

    def put(self, payload: T, rows: int) -> Future[R]:
        """Queue one item of ``rows`` rows (1..max_rows); its future resolves with its output."""
        if not 1 <= rows <= self.max_rows:
            raise ValueError(f"an item must have 1..{self.max_rows} rows, not {rows}")
        item: Pending[T, R] = Pending(payload, rows, self._clock())
        with self._cond:
            if self._closed:
                raise QueueClosed("the batch queue is closed")
            self._items.append(item)
            self._rows += rows
            # Wake the consumer only when it has something new to decide: a first item
            # starts the wait, a full batch ends it. Waking it on every put costs a
            # context switch per job for nothing.
            if len(self._items) == 1 or self._rows >= self.max_rows:
                self._cond.notify_all()
        return item.future

    def next_batch(self, idle_timeout_s: float | None = None) -> list[Pending[T, R]]:
        """Block until a batch is due and return it (whole items, at most max_rows rows).

        Returns an empty list when ``idle_timeout_s`` passes with nothing queued,
        or when the queue is closed and drained.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, idle_timeout_s):
                return []
            if not self._items:
                return []
            deadline = self._items[0].queued_at + self.max_wait_s
            while self._rows < self.max_rows and not self._closed:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._take()

    def close(self) -> None:
        """Refuse new items; queued ones are still handed out by next_batch."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def _take(self) -> list[Pending[T, R]]:
        batch: list[Pending[T, R]] = []
        rows = 0
        while self._items and rows + self._items[0].rows <= self.max_rows:
            item = self._items.popleft()
            rows += item.rows
            batch.append(item)
        self._rows -= rows
        return batch
