"""The writer thread of a bulk run: finished chunks rendered and written off the run's thread.

Rendering a chunk (pyarrow's CSV writer) and writing its part release the GIL, so on
their own thread they overlap with reading, encoding and sending the next chunks.
Writes run one at a time in the order given (output order stays input order), at
most ``max_pending`` are queued (memory stays flat), and whatever follows a write
(counting the chunk's rows) runs on the run's thread only once that write is done.
A failed write is raised on the run's thread, with its own exception, at the latest
by ``flush``: it is never swallowed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class BackgroundWriter:
    def __init__(self, max_pending: int = 2) -> None:
        if max_pending < 1:
            raise ValueError("a writer holds at least one pending write")
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="inferq-writer")
        self._pending: deque[tuple[Future[None], Callable[[], None]]] = deque()

    def put(self, write: Callable[[], None], then: Callable[[], None]) -> None:
        """Queue ``write``; ``then`` runs here once it is done. Blocks while the queue is
        full, and raises the exception of any write already failed."""
        self._pending.append((self._pool.submit(write), then))
        while self._pending and (
            len(self._pending) > self.max_pending or self._pending[0][0].done()
        ):
            self._settle_oldest()

    def flush(self) -> None:
        """Wait for every queued write (raising the first failure)."""
        while self._pending:
            self._settle_oldest()

    def close(self) -> None:
        """Wait for the queued writes (at most ``max_pending``: milliseconds), then stop the
        thread. A chunk collected before an interrupt is kept as a part, as when it was
        written on the run's thread; nothing is written after this returns, so a run that
        starts over never finds a part of the run before. A failure here is not raised:
        the run is ending on another exception already, or has flushed."""
        self._pool.shutdown(wait=True)
        self._pending.clear()

    def _settle_oldest(self) -> None:
        future, then = self._pending.popleft()
        future.result()
        then()
