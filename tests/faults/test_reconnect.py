"""The fixes behind "producers and workers reconnect by themselves", against a real Redis.

The end-to-end proof is `test_faults.test_a_redis_restart_mid_run_loses_no_job`; these
pin each cause down on its own, so a kombu upgrade that brings either back fails here
with a name rather than as a rare stall.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from kombu import Connection
from kombu.exceptions import OperationalError
from kombu.transport import redis as kombu_redis

from inferq.core.celery_config import broker_transport_options, restore_sweep_s
from inferq.core.constants import COURSE_FEATURES
from inferq.core.settings import Settings
from inferq.errors import BrokerUnavailable
from inferq.ops.redis_server import RedisServer
from producer import Client
from producer.sending import sending
from tests.support import delivery
from tests.support.redis_clients import redis_client
from worker.celeryapp.channel import ReconnectSafeChannel


class _SafeTransport(kombu_redis.Transport):  # type: ignore[misc]
    # Per connection here; the worker installs the channel process-wide.
    Channel = ReconnectSafeChannel


class _KombuTransport(kombu_redis.Transport):  # type: ignore[misc]
    # kombu's own channel, even in a process where worker.celeryapp.app has installed ours.
    Channel = kombu_redis.Channel


def _hold_one_unacked(conn: Connection, queue: str) -> kombu_redis.Channel:
    channel = conn.default_channel
    channel.basic_publish(channel.prepare_message("job"), exchange="", routing_key=queue)
    assert channel.basic_get(queue, no_ack=False) is not None  # now in the unacked hash
    return channel


def test_a_detached_channel_still_closes_and_restores_its_unacked_job(
    redis_server: RedisServer,
) -> None:
    """What Celery's consumer does after a lost connection: Connection.collect() detaches
    the transport, then close() closes the channel again. kombu's own channel raises
    AttributeError there (and the consumer dies); ours puts the job back in its queue."""
    queue = f"test-reconnect-{uuid.uuid4().hex[:8]}"
    store = redis_client(redis_server.url)
    with Connection(redis_server.url, transport=_SafeTransport) as conn:
        channel = _hold_one_unacked(conn, queue)
        assert store.llen(queue) == 0
        channel.connection.client = None  # as Connection._do_close_transport() leaves it
        channel.close()
    assert store.llen(queue) == 1


def test_kombu_s_own_channel_still_has_the_bug(redis_server: RedisServer) -> None:
    """Why the fix exists: when this starts failing, kombu fixed it and the fix can go."""
    queue = f"test-reconnect-{uuid.uuid4().hex[:8]}"
    with Connection(redis_server.url, transport=_KombuTransport) as conn:
        channel = _hold_one_unacked(conn, queue)
        channel.connection.client = None
        try:
            channel.close()
        except AttributeError as exc:
            assert "hostname" in str(exc)
        else:
            fix = "worker/channel.py's _connparams"
            raise AssertionError(f"kombu closed a detached channel: drop {fix}")
        finally:
            channel._qos._delivered.clear()  # the job is left in Redis; nothing to restore


def test_overdue_unacked_jobs_are_swept_within_the_visibility_timeout() -> None:
    """kombu's default sweep runs every 10 s x a throttle of 10: a lost worker's jobs came
    back ~100 s late, whatever the visibility timeout said."""
    for visibility_s in (1, 3, 20, 60, 3_600):
        options = broker_transport_options(visibility_s, redis_timeout_s=30.0)
        assert options["visibility_timeout"] == visibility_s
        assert options["unacked_restore_throttle"] == 1
        period_s = options["unacked_restore_interval"] * options["unacked_restore_throttle"]
        assert 1 <= period_s <= max(1, visibility_s // 4) and period_s <= 10
    assert restore_sweep_s(3_600) == 10


def _store_unannounced(url: str, job_id: str) -> None:
    """A result in the store that no pub/sub message announced: what a client finds
    after Celery's result consumer resubscribed too late across a Redis restart."""
    result = {
        "earnings_usd": [123.0],
        "model": {"name": "regressor", "version": "v"},
        "batch": {"id": 1, "rows": 1, "padded_rows": 1, "jobs": 1, "passes": 1},
        "timings_ms": {"batch_wait_ms": 0.0, "inference_ms": 0.0, "total_ms": 0.0},
    }
    meta = {"status": "SUCCESS", "result": result, "traceback": None, "children": []}
    redis_client(url).set(f"celery-task-meta-{job_id}", json.dumps(meta | {"task_id": job_id}))


def _first_fetch_done(client: Client, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once a wait has read the store for the first time: from then on it can find
    a result stored without an announcement only by reading the store again."""
    done, backend = threading.Event(), client.app.backend

    def spying(real: Any) -> Any:
        def spy(*args: Any, **kwargs: Any) -> Any:
            value = real(*args, **kwargs)
            done.set()
            return value

        return spy

    # Client.as_completed reads with get_many, on the backend of its own thread (Celery's
    # app.backend is per thread): spied on the class. Handle.wait reads through the
    # result consumer of the backend its handle was made with.
    owners = ((type(backend), "get_many"), (backend.result_consumer, "on_wait_for_pending"))
    for owner, name in owners:
        monkeypatch.setattr(owner, name, spying(getattr(owner, name)))
    return done


@pytest.mark.parametrize("way", ["wait", "as_completed"])
def test_a_stored_result_nobody_announced_is_still_found(
    redis_server: RedisServer, way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handle.wait and Client.as_completed read the store back every RESULT_POLL_S while
    they wait, so a missed announcement costs a second, not the caller's whole timeout
    (before, both waited the full 30 s here and raised JobTimeout)."""
    queue = f"test-reconnect-{uuid.uuid4().hex[:8]}"  # no worker: only the store answers
    env = {"INFERQ_REDIS_URL": redis_server.url, "INFERQ_REGRESSION_QUEUE": queue}
    with Client(Settings.load(env)) as client:
        handles = [client.submit(dict.fromkeys(COURSE_FEATURES, 1.0)) for _ in range(3)]
        fetched = _first_fetch_done(client, monkeypatch)
        if way == "wait":
            handles = handles[:1]
            waiting = ThreadPoolExecutor(1).submit(lambda: [handles[0].wait(30)])
        else:
            waiting = ThreadPoolExecutor(1).submit(lambda: list(client.as_completed(handles, 30)))
        assert fetched.wait(10), "the wait never read the store"
        started = time.monotonic()
        for handle in handles:
            _store_unannounced(redis_server.url, handle.id)
        assert len(waiting.result(timeout=40)) == len(handles)
        assert time.monotonic() - started < 5  # RESULT_POLL_S is 1 s; before, 30 s
        delivery.drop_subscriptions(client)


# Celery's words when its result consumer gives up reconnecting (asynchronous.py), as
# Celery 5.7 writes them: the client matches Celery's constant, this pins its text.
_CELERY_GAVE_UP = (
    "\nRetry limit exceeded while trying to reconnect to the Celery result store\n"
    "backend. The Celery application must be restarted.\n"
)


@pytest.mark.parametrize(
    "raised",
    [
        OperationalError("Error 110 connecting to 10.0.0.1:6379. Connection timed out."),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        RuntimeError(_CELERY_GAVE_UP),
    ],
)
def test_a_send_that_redis_does_not_answer_is_a_typed_error(raised: BaseException) -> None:
    def send(**_: Any) -> Any:
        raise raised

    with pytest.raises(BrokerUnavailable) as caught:
        sending(send, task_id=None)
    assert caught.value.__cause__ is raised
    assert caught.value.code == "broker_unavailable"


def test_other_errors_of_a_send_are_not_renamed() -> None:
    def send(**_: Any) -> Any:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        sending(send, task_id=None)
