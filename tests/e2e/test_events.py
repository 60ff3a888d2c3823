"""Task events (Flower, monitors) for jobs on both worker paths, from a real worker.

Small predict jobs skip Celery's pool (worker.celeryapp.direct) and big ones take it: a
monitor must see the same life cycle for both, received → started → succeeded
or failed, as Celery's own path sends it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from inferq.core.constants import PREDICT_TASK
from inferq.errors import InvalidInput
from producer import Client
from tests.support.delivery import rows
from tests.support.harness import E2E_MAX_BATCH, E2E_QUEUE

LIFE = ["task-received", "task-started", "task-succeeded"]


class Events:
    """Every event on the broker, captured in a thread by Celery's own receiver."""

    def __init__(self, app: Celery) -> None:
        self.seen: list[dict[str, Any]] = []
        self._conn = app.connection_for_read()
        self._receiver = app.events.Receiver(self._conn, handlers={"*": self.seen.append})
        self._thread = threading.Thread(target=self._capture, daemon=True)

    def _capture(self) -> None:
        # wakeup: workers answer with a heartbeat at once, which shows the queue is bound.
        self._receiver.capture(limit=None, timeout=None, wakeup=True)

    def __enter__(self) -> Events:
        self._thread.start()
        self.wait_for(lambda: any(e["type"].startswith("worker-") for e in self.seen))
        return self

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
            assert time.monotonic() < deadline, f"events did not arrive: {self.seen!r:.3000}"
            time.sleep(0.05)  # polling a list another thread fills; bounded by the deadline


@pytest.fixture()
def events(client: Client) -> Iterator[Events]:
    with Events(client.app) as captured:
        yield captured


def test_both_paths_send_the_whole_life_cycle(client: Client, events: Events) -> None:
    games = rows(E2E_MAX_BATCH + 1)
    small = client.submit(games[0])  # one batch of rows at most: worker.celeryapp.direct
    big = client.submit(games)  # one row more than a batch: the pool path
    bad = client.app.send_task(PREDICT_TASK, kwargs={"rows": {}}, queue=E2E_QUEUE)
    assert len(small.wait(60).earnings_usd) == 1
    assert big.wait(60).batch.passes == 2
    with pytest.raises(InvalidInput):
        bad.get(timeout=60)
    expected = {small.id: LIFE, big.id: LIFE, bad.id: [*LIFE[:2], "task-failed"]}
    events.wait_for(lambda: all(events.types(i) == want for i, want in expected.items()))
