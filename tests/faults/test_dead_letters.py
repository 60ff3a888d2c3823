"""Queue entries that used to stop a worker, and the next one, on a live worker.

Each entry of the hardening issue is pushed raw onto a served queue ahead of good
jobs: the worker stays up and answers the good jobs, the entry is in the dead-letter
list with its raw bytes and a reason, an entry with a task id gets invalid_message,
a second worker started on the same queue survives too, `inferq queues` counts the
letters and `inferq dead-letters` requeues one. A Redis that refuses the unacked
write (maxmemory, noeviction) gets the popped entry back, not nowhere.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import kombu
import pytest
import redis
from kombu.transport import redis as kombu_redis

from inferq.core.constants import DEAD_LETTER_KEY, PREDICT_TASK
from inferq.core.settings import Settings
from inferq.errors import InvalidMessage
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess
from producer import Client
from tests.support.delivery import rows
from tests.support.harness import cli_env, run_inferq
from tests.support.messages import real_envelope
from tests.support.redis_clients import redis_client
from worker.celeryapp.channel import ReconnectSafeChannel
from worker.celeryapp.dead_letters import EntryGuard

pytestmark = pytest.mark.e2e

QUEUE = "test-dead-letters"
GOOD = rows(4)


def _envelope(client: Client, store: redis.Redis) -> dict[str, Any]:
    return real_envelope(client, store, PREDICT_TASK, {"rows": GOOD[0]})


def _broken(envelope: dict[str, Any]) -> dict[str, bytes]:
    """The entries of the issue, by name; the last two name a task id."""
    no_tag = json.loads(json.dumps(envelope))
    del no_tag["properties"]["delivery_tag"]
    no_tag["headers"]["id"] = "dead-no-tag"
    bad_body = json.loads(json.dumps(envelope))
    bad_body["body"], bad_body["headers"]["id"] = "%%% not base64 %%%", "dead-bad-body"
    bad_body["properties"]["body_encoding"] = "rot13"
    return {
        "int": b"5",
        "list": b"[]",
        "object": b"{}",
        "not json": b"\xff\xfe not json",
        "no properties": json.dumps({"body": "", "headers": {}}).encode(),
        "nested 5000 deep": b"[" * 5000 + b"]" * 5000,
        "no delivery tag": json.dumps(no_tag).encode(),
        "bad body": json.dumps(bad_body).encode(),
    }


@pytest.fixture()
def setup(
    redis_server: RedisServer, worker_env: dict[str, str]
) -> Iterator[tuple[dict[str, str], Client, redis.Redis]]:
    env = {**worker_env, "INFERQ_REGRESSION_QUEUE": QUEUE, "INFERQ_MAX_MESSAGE_BYTES": "20000"}
    store = redis_client(redis_server.url)
    store.delete(DEAD_LETTER_KEY, QUEUE)
    with Client(Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})) as client:
        yield env, client, store
    store.delete(DEAD_LETTER_KEY)
    store.close()


def _letters(store: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(v) for v in store.lrange(DEAD_LETTER_KEY, 0, -1)]  # type: ignore[union-attr]


def test_entries_that_killed_workers_are_dead_lettered_and_answered(
    redis_server: RedisServer, setup: tuple[dict[str, str], Client, redis.Redis]
) -> None:
    env, client, store = setup
    broken = _broken(_envelope(client, store))
    too_large = json.loads(json.dumps(_envelope(client, store)))
    too_large["headers"]["id"] = "dead-too-large"
    too_large["body"] = base64.b64encode(b"x" * 30_000).decode()
    broken["too large"] = json.dumps(too_large).encode()
    for raw in broken.values():  # queued before any worker runs: the first pops them all
        store.lpush(QUEUE, raw)
    handles = [client.submit(row) for row in GOOD]
    for attempt in ("first", "second"):  # the second starts with what the first left (none)
        with WorkerProcess(redis_server.url, env=env) as worker:
            assert all(h.wait(30).earnings_usd[0] > 0 for h in handles), attempt
            assert worker.process is not None and worker.process.poll() is None, attempt
            assert worker.stop() == 0
        handles = [client.submit(GOOD[0])]
    letters = _letters(store)
    assert sorted(base64.b64decode(d["raw_b64"]) for d in letters) == sorted(broken.values())
    assert all(d["queue"] == QUEUE and d["reason"] and d["at"] for d in letters)
    for task_id in ("dead-no-tag", "dead-bad-body", "dead-too-large"):
        with pytest.raises(InvalidMessage):
            client.app.AsyncResult(task_id).get(timeout=10)
    counted = run_inferq("queues", "--queues", "regression", "--json", env=_cli(env, store))
    assert json.loads(counted.stdout)["dead_letters"] == len(broken)


def _cli(env: dict[str, str], store: redis.Redis) -> dict[str, str]:
    kwargs = store.connection_pool.connection_kwargs
    url = f"redis://{kwargs['host']}:{kwargs['port']}/0"
    return {**cli_env(Settings.load({**env, "INFERQ_REDIS_URL": url}))}


def test_an_operator_lists_and_requeues_a_dead_letter(
    redis_server: RedisServer, setup: tuple[dict[str, str], Client, redis.Redis]
) -> None:
    env, client, store = setup
    # A good job too large for this worker's limit, then the limit is raised: requeued,
    # it runs.
    job = _envelope(client, store)
    job["headers"]["id"] = task_id = str(uuid.uuid4())
    job["headers"]["kwargsrepr"] = "x" * 25_000  # over 20,000 bytes, still a valid job
    store.lpush(QUEUE, json.dumps(job))
    too_small = pytest.raises(InvalidMessage, match="INFERQ_MAX_MESSAGE_BYTES")
    with WorkerProcess(redis_server.url, env=env), too_small:
        client.app.AsyncResult(task_id).get(timeout=30)
    listed = run_inferq("dead-letters", "list", env=_cli(env, store))
    assert listed.returncode == 0 and "1 dead letter(s)" in listed.stdout
    assert f"task_id={task_id}" in listed.stdout
    requeued = run_inferq("dead-letters", "requeue", "0", env=_cli(env, store))
    assert requeued.stdout.strip() == "requeued 1 of 1" and store.llen(DEAD_LETTER_KEY) == 0
    store.delete(f"celery-task-meta-{task_id}")
    with WorkerProcess(redis_server.url, env={**env, "INFERQ_MAX_MESSAGE_BYTES": "1000000"}):
        assert client.app.AsyncResult(task_id).get(timeout=30)["earnings_usd"][0] > 0


def test_an_unacked_write_redis_refuses_puts_the_entry_back(worker_env: dict[str, str]) -> None:
    with RedisServer() as server:
        store = redis_client(server.url)
        env = {**worker_env, "INFERQ_REGRESSION_QUEUE": QUEUE}
        settings = Settings.load({**env, "INFERQ_REDIS_URL": server.url})
        with WorkerProcess(server.url, env=env) as worker, Client(settings) as client:
            assert client.predict(GOOD[0], timeout_s=30).earnings_usd[0] > 0
            job = _envelope(client, store)
            job["headers"]["id"] = task_id = str(uuid.uuid4())
            store.config_set("maxmemory-policy", "noeviction")
            # One transaction: the job is queued and Redis is full before the waiting
            # worker's BRPOP is served, so the worker's unacked record is refused.
            with store.pipeline(transaction=True) as pipe:
                pipe.lpush(QUEUE, json.dumps(job))
                pipe.config_set("maxmemory", 1)
                pipe.execute()
            _wait_for_line(worker, "refuses to take back an entry")
            store.config_set("maxmemory", 0)  # room again: the entry goes back, then runs
            _wait_for_line(worker, "went back to its queue")
            assert client.app.AsyncResult(task_id).get(timeout=30)["earnings_usd"][0] > 0
        store.close()


def _wait_for_line(worker: WorkerProcess, text: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in worker.log_tail(200_000):
        assert time.monotonic() < deadline, f"no {text!r}: {worker.log_tail()}"
        time.sleep(0.05)  # polling the worker's log, deadline-bounded


class _GuardedTransport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = ReconnectSafeChannel  # per connection here; a worker installs it process-wide


class _Stop(Exception):
    """A consumer's own control flow, as `inferq health` ends a broadcast early."""


def _consume_once(url: str, callback: Any) -> kombu.Queue:
    queue = kombu.Queue(f"test-callback-{uuid.uuid4().hex[:8]}")
    with kombu.Connection(url, transport=_GuardedTransport) as conn:
        conn.Producer().publish({"reply": 1}, routing_key=queue.name, declare=[queue])
        with conn.Consumer(queue, callbacks=[callback], accept=["json"]):
            conn.drain_events(timeout=10)
    return queue


def _stop(body: Any, message: Any) -> None:
    raise _Stop


def test_a_client_callback_raising_is_not_a_dead_letter(redis_server: RedisServer) -> None:
    # Outside a worker an exception of the consumer's callback is the consumer's: the
    # guard once swallowed `inferq health`'s early stop (it then waited out its timeout)
    # and dead-lettered a worker's reply.
    with pytest.raises(_Stop):
        _consume_once(redis_server.url, _stop)
    store = redis_client(redis_server.url)
    assert store.llen(DEAD_LETTER_KEY) == 0, store.lrange(DEAD_LETTER_KEY, 0, -1)
    store.close()


def test_an_entry_a_workers_consumer_fails_on_is_dead_lettered_once(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a worker the consumer is Celery's: an entry it raises on would stop the worker.
    monkeypatch.setattr(ReconnectSafeChannel, "guard", EntryGuard(consumer_errors=True))
    queue = _consume_once(redis_server.url, _stop)
    store = redis_client(redis_server.url)
    # The session's Redis is shared: only this test's queue is looked at.
    letters = [json.loads(v) for v in store.lrange(DEAD_LETTER_KEY, 0, -1)]
    [letter] = [x for x in letters if x["queue"] == queue.name]
    assert letter["reason"].startswith("the consumer failed on it: _Stop")
    # Its unacked copy is gone too: the channel's close (or the visibility timeout)
    # would otherwise put it back on the queue, to be dead-lettered again and again.
    assert store.llen(queue.name) == 0
    unacked = [json.loads(v) for v in store.hvals("unacked")]
    assert [entry for entry in unacked if entry[2] == queue.name] == []
    store.close()
