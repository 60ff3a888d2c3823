"""Task events as a monitor (Flower) sees them: Celery's own receiver in a thread, and
Celery's own event State (what Flower's task list is built from).

Workers send task events only once a monitor asks (``INFERQ_TASK_EVENTS`` is off by
default, as in Celery): Flower broadcasts ``enable_events`` every 5 s, and so does
``Events``, once at the start and then for each node a test names (``enable``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from celery import Celery


class Events:
    """Every event on the broker, captured in a thread by Celery's own receiver."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.seen: list[dict[str, Any]] = []
        self.state = app.events.State()
        self._conn = app.connection_for_read()
        self._receiver = app.events.Receiver(self._conn, handlers={"*": self._on_event})
        self._thread = threading.Thread(target=self._capture, daemon=True)

    def _on_event(self, event: dict[str, Any]) -> None:
        self.state.event(event)
        self.seen.append(event)

    def _capture(self) -> None:
        # wakeup: workers answer with a heartbeat at once, which shows the queue is bound.
        self._receiver.capture(limit=None, timeout=None, wakeup=True)

    def __enter__(self) -> Events:
        self._thread.start()
        self.wait_for(lambda: any(e["type"].startswith("worker-") for e in self.seen))
        self.app.control.enable_events()  # every worker up now, as Flower's first broadcast
        return self

    def enable(self, node: str, timeout_s: float = 30) -> None:
        """Turn task events on at ``node`` as Flower does, and wait until it has answered:
        its jobs from now on send their whole life cycle."""
        deadline = time.monotonic() + timeout_s
        while not self.app.control.enable_events(destination=[node], reply=True, timeout=1.0):
            assert time.monotonic() < deadline, f"{node} did not answer enable_events"

    def __exit__(self, *_: object) -> None:
        self._receiver.should_stop = True
        self._thread.join(10)
        self._conn.release()

    def types(self, task_id: str) -> list[str]:
        """The worker's events for one job, in order (the producer's task-sent aside)."""
        return [
            e["type"]
            for e in list(self.seen)
            if e.get("uuid") == task_id and e["type"] != "task-sent"
        ]

    def wait_for(self, done: Any, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, f"events did not arrive: {self.seen[-50:]!r:.3000}"
            time.sleep(0.05)  # polling a list another thread fills; bounded by the deadline
