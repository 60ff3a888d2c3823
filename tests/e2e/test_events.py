"""Task events (Flower, monitors) for jobs on both worker paths, from a real worker.

Small predict jobs skip Celery's pool (worker.celeryapp.direct) and big ones take it: a
monitor must see the same life cycle for both, received → started → succeeded
or failed, as Celery's own path sends it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inferq.core.constants import PREDICT_TASK
from inferq.errors import InvalidInput
from inferq.ops.worker_process import WorkerProcess
from producer import Client
from tests.support.delivery import rows
from tests.support.events import Events
from tests.support.harness import E2E_MAX_BATCH, E2E_QUEUE

LIFE = ["task-received", "task-started", "task-succeeded"]


@pytest.fixture()
def node(worker: WorkerProcess) -> str:
    return worker.ready_file.read_text().splitlines()[0]


@pytest.fixture()
def events(client: Client, node: str) -> Iterator[Events]:
    with Events(client.app) as captured:
        captured.enable(node)  # as Flower does: task events are off until a monitor asks
        yield captured


def test_task_events_wait_for_a_monitor_to_ask(client: Client, events: Events, node: str) -> None:
    """As in Celery, a worker sends no task events until a monitor turns them on
    (``enable_events``: Flower broadcasts it every 5 s), then the whole life cycle."""
    assert client.app.control.disable_events(destination=[node], reply=True, timeout=5)
    unwatched = client.submit(rows(1)[0])
    unwatched.wait(60)
    events.enable(node)
    watched = client.submit(rows(1)[0])
    watched.wait(60)
    events.wait_for(lambda: events.types(watched.id) == LIFE)
    # One worker, one event connection: the unwatched job's events would have come first.
    assert events.types(unwatched.id) == []


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
