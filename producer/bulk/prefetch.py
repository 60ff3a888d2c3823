"""The reader thread of a bulk run: the next chunks read and parsed ahead of the run's thread.

Reading (pyarrow's CSV reader) and parsing a chunk's feature columns (numpy) release
the GIL for most of their time, so on their own thread they overlap with encoding,
sending and collecting on the run's thread. At most ``depth`` items wait (memory
stays flat); the items come in the order the source gives them, and an exception
the source raises is raised on the run's thread, where it would have been.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

# How often a reader blocked on a full queue looks whether the run has ended.
_STOP_CHECK_S = 0.1


class Prefetch(Generic[T]):
    def __init__(self, source: Iterator[T], depth: int = 2) -> None:
        self._queue: queue.Queue[tuple[bool, T | BaseException | None]] = queue.Queue(depth)
        self._stop = threading.Event()
        # A daemon: a reader still inside the source when the process exits never holds
        # the exit up (close() has told it to stop; it has nothing to save).
        self._thread = threading.Thread(
            target=self._run, args=(source,), name="inferq-reader", daemon=True
        )
        self._thread.start()

    def __iter__(self) -> Iterator[T]:
        while True:
            is_item, value = self._queue.get()
            if is_item:
                yield value  # type: ignore[misc]
            elif value is None:
                return
            else:
                raise value  # type: ignore[misc]

    def close(self) -> None:
        """Stop reading ahead (the run ended, however) and wait for the reader to go."""
        self._stop.set()
        self._thread.join()

    def _run(self, source: Iterator[T]) -> None:
        try:
            for item in source:
                if not self._put((True, item)):
                    return
        except BaseException as exc:  # handed to the run's thread, which raises it
            self._put((False, exc))
            return
        self._put((False, None))

    def _put(self, entry: tuple[bool, T | BaseException | None]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=_STOP_CHECK_S)
                return True
            except queue.Full:
                continue
        return False
