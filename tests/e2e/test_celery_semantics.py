"""Celery's semantics, from a plain Celery client against real workers, for every task on
every path (tests/support/semantics.py): the canvas (link, link_error, chain, chord,
group), countdown and ETA, expiry, revocation, priority, ignore_result, the result's
state and date, and task events as a monitor (Flower) sees them.

A fast path that skips Celery's tracer must still do all of it (issue 20: a link and a
chain's next step were once lost there). Link targets run on a small Celery worker of
their own (tests.support.echo_app), whose ``tests.echo`` returns what it was handed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
import redis
from celery import Celery, chain, chord, group, states
from celery.exceptions import TaskRevokedError

from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_command import celery_command
from inferq.ops.worker_process import WorkerProcess
from tests.support.events import Events
from tests.support.harness import E2E_QUEUE, VISION_QUEUE, schema
from tests.support.semantics import (
    BAD_FIELD,
    CASES,
    ECHO_QUEUE,
    PREFORK_REGRESSION,
    PREFORK_VISION,
    REGRESSION_TASKS,
    Served,
    path_options,
)

pytestmark = pytest.mark.e2e

GET_S = 90.0
COUNTDOWN_S = 0.6  # long enough to tell from no wait, short enough for the suite
LIFE = ["task-received", "task-started", "task-succeeded"]


@pytest.fixture(scope="module")
def app(redis_server: RedisServer) -> Iterator[Celery]:
    """A plain Celery client: no routes, no inferq code, JSON as any producer sends."""
    url = redis_server.url
    app = Celery("test-semantics", broker=url, backend=url, set_as_current=False)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    yield app
    app.close()


@pytest.fixture(scope="module")
def echo_worker(redis_server: RedisServer) -> Iterator[WorkerProcess]:
    argv = celery_command(
        [ECHO_QUEUE], "semantics-echo@%h", "WARNING", "-P", "solo", app="tests.support.echo_app"
    )
    with WorkerProcess(redis_server.url, argv=argv) as proc:
        yield proc


@pytest.fixture(scope="module")
def prefork_worker(
    redis_server: RedisServer, worker_env: dict[str, str], vision_env: dict[str, str]
) -> Iterator[WorkerProcess]:
    """`celery -A worker` with the prefork pool (``processes``: ``prefork`` would mean
    Celery's default, which our configured threads pool replaces), one child."""
    env = {
        **worker_env,
        **vision_env,
        "INFERQ_REGRESSION_QUEUE": PREFORK_REGRESSION,
        "INFERQ_VISION_QUEUE": PREFORK_VISION,
    }
    queues = [PREFORK_REGRESSION, PREFORK_VISION]
    argv = celery_command(queues, "semantics-prefork@%h", "INFO", "-P", "processes", "-c", "1")
    with WorkerProcess(redis_server.url, env=env, argv=argv) as proc:
        yield proc


@pytest.fixture(scope="module", params=CASES, ids=lambda case: case.name)
def served(request: pytest.FixtureRequest, app: Celery, echo_worker: WorkerProcess) -> Served:
    case = request.param
    regression = case.task in REGRESSION_TASKS
    if case.path == "prefork":
        proc = request.getfixturevalue("prefork_worker")
        queue = PREFORK_REGRESSION if regression else PREFORK_VISION
    else:  # the session's threads workers
        proc = request.getfixturevalue("worker" if regression else "vision_worker")
        queue = E2E_QUEUE if regression else VISION_QUEUE
    node = proc.ready_file.read_text().splitlines()[0]
    return Served(case, app, queue, node, path_options(case))


@pytest.fixture(scope="module")
def monitor(app: Celery) -> Iterator[Events]:
    with Events(app) as captured:
        yield captured


@pytest.fixture()
def events(served: Served, monitor: Events) -> Events:
    """The monitor, with task events turned on at the served worker (as Flower does)."""
    monitor.enable(served.node)
    return monitor


def _valid(served: Served, value: Any) -> Any:
    jsonschema.validate(value, schema(f"{served.case.task}.result"))
    return value


def _revoke(served: Served, task_id: str) -> None:
    """Revoke, and wait for the worker to say it has (no race with the job)."""
    replies = served.app.control.revoke(
        task_id, destination=[served.node], reply=True, timeout=GET_S
    )
    assert replies, f"{served.node} did not answer the revoke"


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def test_a_result_has_its_value_state_and_date(served: Served) -> None:
    sent = datetime.now(UTC)
    result = served.sig().apply_async()
    _valid(served, result.get(timeout=GET_S))
    assert result.state == states.SUCCESS
    assert sent - timedelta(seconds=1) <= _utc(result.date_done) <= datetime.now(UTC)


def test_link_sends_each_callback_the_result(served: Served) -> None:
    (first, first_result), (second, second_result) = served.echo(), served.echo()
    result = served.sig().apply_async(link=[first, second])  # two: Celery sends a group
    value = _valid(served, result.get(timeout=GET_S))
    assert first_result.get(timeout=GET_S) == value
    assert second_result.get(timeout=GET_S) == value


def test_link_error_sends_the_errback_the_failed_job(served: Served) -> None:
    errback, called = served.echo()
    result = served.sig(bad=True).apply_async(link_error=errback)
    assert called.get(timeout=GET_S) == result.id
    failure = result.get(timeout=GET_S, propagate=False)
    assert result.state == states.FAILURE
    assert BAD_FIELD[served.case.task] in str(failure)


def test_a_chain_sends_its_next_step_the_result(served: Served) -> None:
    last = chain(served.sig(), served.echo()[0], app=served.app).apply_async()
    value = last.get(timeout=GET_S)
    assert last.parent is not None
    assert value == _valid(served, last.parent.get(timeout=GET_S))


def test_a_chord_body_gets_every_header_result(served: Served) -> None:
    header = [served.sig(), served.sig()]
    parts = [sig.freeze() for sig in header]  # the chord keeps the ids it is given
    body = chord(header, served.echo()[0], app=served.app).apply_async()
    values = body.get(timeout=GET_S)
    assert len(values) == 2
    assert values == [_valid(served, part.get(timeout=GET_S)) for part in parts]


def test_a_group_gets_every_result(served: Served) -> None:
    values = group(served.sig(), served.sig(), app=served.app).apply_async().get(timeout=GET_S)
    assert len(values) == 2 and all(_valid(served, v) for v in values)


@pytest.mark.parametrize("how", ["countdown", "eta"])
def test_a_job_runs_no_sooner_than_its_countdown_or_eta(served: Served, how: str) -> None:
    sent = datetime.now(UTC)
    when = (
        {"countdown": COUNTDOWN_S}
        if how == "countdown"
        else {"eta": sent + timedelta(seconds=COUNTDOWN_S)}
    )
    result = served.sig(**when).apply_async()
    _valid(served, result.get(timeout=GET_S))
    assert _utc(result.date_done) >= sent + timedelta(seconds=COUNTDOWN_S)


def test_a_job_expired_before_it_arrives_is_revoked(served: Served) -> None:
    result = served.sig(expires=datetime.now(UTC) - timedelta(minutes=1)).apply_async()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=GET_S)
    assert result.state == states.REVOKED


def test_a_job_that_expires_while_it_waits_is_revoked(served: Served) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=COUNTDOWN_S / 2)
    result = served.sig(countdown=COUNTDOWN_S, expires=expires).apply_async()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=GET_S)
    assert result.state == states.REVOKED


def test_a_job_revoked_before_it_arrives_never_runs(served: Served, events: Events) -> None:
    task_id = str(uuid.uuid4())
    _revoke(served, task_id)
    result = served.sig().apply_async(task_id=task_id)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=GET_S)
    events.wait_for(lambda: "task-revoked" in events.types(task_id))
    assert "task-started" not in events.types(task_id)


def test_a_job_revoked_while_the_worker_holds_it_never_runs(served: Served, events: Events) -> None:
    result = served.sig(countdown=2 * COUNTDOWN_S).apply_async()
    events.wait_for(lambda: "task-received" in events.types(result.id))
    _revoke(served, result.id)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=GET_S)
    assert "task-started" not in events.types(result.id)


@pytest.mark.parametrize("priority", [0, 9])
def test_a_job_with_a_priority_is_answered(served: Served, priority: int) -> None:
    result = served.sig(priority=priority).apply_async()
    _valid(served, result.get(timeout=GET_S))


def test_ignore_result_runs_the_job_and_stores_nothing(
    served: Served, events: Events, redis_server: RedisServer
) -> None:
    result = served.sig(ignore_result=True).apply_async()
    events.wait_for(lambda: "task-succeeded" in events.types(result.id), GET_S)
    with redis.Redis.from_url(redis_server.url) as store:
        assert store.get(f"celery-task-meta-{result.id}") is None


def test_a_monitor_sees_each_job_received_started_and_finished(
    served: Served, events: Events
) -> None:
    good, bad = served.sig().apply_async(), served.sig(bad=True).apply_async()
    good.get(timeout=GET_S)
    bad.get(timeout=GET_S, propagate=False)
    expected = {good.id: LIFE, bad.id: [*LIFE[:2], "task-failed"]}
    events.wait_for(lambda: all(events.types(i) == want for i, want in expected.items()))
    seen = events.state.tasks  # what Flower's task list shows
    assert seen[good.id].state == states.SUCCESS and seen[bad.id].state == states.FAILURE
    assert seen[good.id].name == seen[bad.id].name == served.case.task
