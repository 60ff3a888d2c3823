"""The two broker fixes behind "workers reconnect by themselves", against a real Redis.

The end-to-end proof is `test_faults.test_a_redis_restart_mid_run_loses_no_job`; these
pin each cause down on its own, so a kombu upgrade that brings either back fails here
with a name rather than as a rare stall.
"""

from __future__ import annotations

import uuid

import redis
from kombu import Connection
from kombu.transport import redis as kombu_redis

from inferq.celery_config import broker_transport_options, restore_sweep_s
from inferq.redis_server import RedisServer
from worker.reconnect import ReconnectSafeChannel


class _SafeTransport(kombu_redis.Transport):  # type: ignore[misc]
    # Per connection here; the worker installs the channel process-wide.
    Channel = ReconnectSafeChannel


class _KombuTransport(kombu_redis.Transport):  # type: ignore[misc]
    # kombu's own channel, even in a process where worker.app has installed ours.
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
    store = redis.Redis.from_url(redis_server.url)
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
            raise AssertionError("kombu closed a detached channel: drop worker/reconnect.py")
        finally:
            channel._qos._delivered.clear()  # the job is left in Redis; nothing to restore


def test_overdue_unacked_jobs_are_swept_within_the_visibility_timeout() -> None:
    """kombu's default sweep runs every 10 s x a throttle of 10: a lost worker's jobs came
    back ~100 s late, whatever the visibility timeout said."""
    for visibility_s in (1, 3, 20, 60, 3_600):
        options = broker_transport_options(visibility_s)
        assert options["visibility_timeout"] == visibility_s
        assert options["unacked_restore_throttle"] == 1
        period_s = options["unacked_restore_interval"] * options["unacked_restore_throttle"]
        assert 1 <= period_s <= max(1, visibility_s // 4) and period_s <= 10
    assert restore_sweep_s(3_600) == 10
