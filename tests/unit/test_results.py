"""worker.celeryapp.results against a real Redis: many results stored as Celery stores one."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery, states
from celery.app.task import Context

from inferq.ops.redis_server import RedisServer
from tests.support.redis_clients import redis_client
from worker.celeryapp.results import fast_path, store_done


@pytest.fixture()
def app(redis_server: RedisServer) -> Iterator[Celery]:
    app = Celery("test-results", broker=redis_server.url, backend=redis_server.url)
    app.conf.update(result_serializer="json", result_expires=600)
    yield app
    app.close()


def _request(**fields: Any) -> Any:
    """What store_done reads of Celery's Request: id, chord, ignore_result, _context."""
    task_id = str(uuid.uuid4())
    context = Context({"id": task_id, **fields})
    return SimpleNamespace(id=task_id, chord=None, ignore_result=False, _context=context, **fields)


def _stored(app: Celery, task_id: str) -> dict[str, Any]:
    raw = app.backend.client.get(app.backend.get_key_for_task(task_id))
    assert raw is not None
    return dict(json.loads(raw))


def test_store_done_writes_what_store_result_writes(app: Celery) -> None:
    result = {"earnings_usd": [123.5], "batch": {"rows": 3}}
    ours, celerys = _request(parent_id="p-1"), _request(parent_id="p-1")
    store_done(app.backend, [(ours, result)])
    app.backend.store_result(celerys.id, result, states.SUCCESS, request=celerys._context)
    mine, theirs = _stored(app, ours.id), _stored(app, celerys.id)
    for meta in (mine, theirs):
        meta.pop("date_done")
        meta.pop("task_id")
    assert mine == theirs
    assert mine["status"] == "SUCCESS" and mine["result"] == result
    key = app.backend.get_key_for_task(ours.id)
    assert 0 < app.backend.client.ttl(key) <= 600


def test_store_done_announces_each_result_and_keeps_a_stored_success(
    app: Celery, redis_server: RedisServer
) -> None:
    first, second = _request(), _request()
    store_done(app.backend, [(first, {"n": 1})])
    subscriber = redis_client(redis_server.url).pubsub()
    keys = [app.backend.get_key_for_task(r.id) for r in (first, second)]
    subscriber.subscribe(*keys)
    subscriber.get_message(timeout=5)  # the two subscribe confirmations
    subscriber.get_message(timeout=5)
    # A redelivered job answered again: its first success stays (Celery's rule).
    store_done(app.backend, [(first, {"n": 2}), (second, {"n": 3})])
    assert _stored(app, first.id)["result"] == {"n": 1}
    assert _stored(app, second.id)["result"] == {"n": 3}
    message = subscriber.get_message(timeout=5)
    assert message is not None and message["channel"] == keys[1]
    assert json.loads(message["data"])["result"] == {"n": 3}
    assert subscriber.get_message(timeout=0.2) is None  # nothing announced for the first
    subscriber.close()


def test_chords_and_ignored_results_take_celerys_own_path(app: Celery) -> None:
    assert fast_path(app.backend, _request())
    assert not fast_path(app.backend, SimpleNamespace(chord={"task": "x"}, ignore_result=False))
    assert not fast_path(app.backend, SimpleNamespace(chord=None, ignore_result=True))
    other = SimpleNamespace(backend=object())
    assert not fast_path(other.backend, _request())
