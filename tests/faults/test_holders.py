"""Who holds an unacked job (worker.celeryapp.holders), on a real Redis with kombu's
real channels: a job whose holder is gone goes back to its queue within seconds, a job
a live holder keeps is never restored under it, two sweepers restore an entry once, and
the producers' presence check calls a job with a gone holder missing.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import kombu
import pytest
import redis
from kombu.transport import redis as kombu_redis

from inferq.core.kombu_keys import HOLDER_OF_KEY, SWEEP_TOKEN_KEY, UNACKED_KEY
from inferq.ops.queues import depths
from inferq.ops.redis_server import RedisServer
from producer.presence import held_ids
from worker.celeryapp.channel import ReconnectSafeChannel
from worker.celeryapp.holders import Holders

pytestmark = pytest.mark.e2e

TTL_S = 1.0


def _transport(holders: Holders | None) -> type:
    """A transport whose channels record ``holders`` (a worker installs one process-wide)."""
    channel = type("HeldChannel", (ReconnectSafeChannel,), {"holders": holders})
    return type("HeldTransport", (kombu_redis.Transport,), {"Channel": channel})


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A Redis of this module's own: a worker of the session's Redis would sweep these
    tests' orphans too (rightly), and race the checks."""
    with RedisServer() as server:
        yield server


@pytest.fixture()
def store(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


class Consumer:
    """One kombu connection with its own holders: a worker's consuming channel."""

    def __init__(self, url: str, ttl_s: float = TTL_S) -> None:
        self.holders = Holders(ttl_s, node=f"test-{uuid.uuid4().hex[:6]}")
        self.conn = kombu.Connection(url, transport=_transport(self.holders))
        self.channel: Any = self.conn.default_channel

    def take(self, queue: str, count: int) -> list[Any]:
        """``count`` jobs popped and recorded as unacked, as a worker's delivery does."""
        got = [self.channel.basic_get(queue, no_ack=False) for _ in range(count)]
        assert all(m is not None for m in got)
        return got

    def close(self) -> None:
        self.holders.stop()
        self.conn.release()


def _publish(url: str, queue: str, count: int) -> None:
    with kombu.Connection(url, transport=_transport(None)) as conn:
        producer = conn.Producer()
        for i in range(count):
            # A task id where Celery writes it, for the presence check to read.
            headers = {"id": f"job-{uuid.uuid4().hex}"}
            producer.publish(
                {"i": i}, routing_key=queue, declare=[kombu.Queue(queue)], headers=headers
            )


def _sweep_until(sweeper: Consumer, done: Any, timeout_s: float) -> float:
    """Sweep (as the worker's thread does, token permitting) until ``done()``; seconds."""
    start = deadline = time.monotonic()
    deadline += timeout_s
    while not done():
        assert time.monotonic() < deadline, "the sweep did not restore the jobs in time"
        sweeper.holders.sweep(sweeper.channel)
        time.sleep(0.05)  # the sweep's next round, deadline-bounded
    return time.monotonic() - start


def test_a_job_whose_holder_is_gone_is_back_within_seconds(
    redis_server: RedisServer, store: redis.Redis
) -> None:
    queue = f"test-holders-{uuid.uuid4().hex[:6]}"
    _publish(redis_server.url, queue, 5)
    gone, sweeper = Consumer(redis_server.url), Consumer(redis_server.url)
    try:
        gone.take(queue, 5)
        sweeper.take(queue, 0)  # nothing held, but it sweeps
        assert store.llen(queue) == 0 and store.hlen(UNACKED_KEY) == 5
        assert set(store.hvals(HOLDER_OF_KEY)) == {gone.channel.holder_id().encode()}
        # Held by a live holder: never restored, however often others sweep.
        until = time.monotonic() + 3 * TTL_S
        while time.monotonic() < until:
            store.delete(SWEEP_TOKEN_KEY)  # every sweep runs, not one per interval
            assert sweeper.holders.sweep(sweeper.channel) == 0
            time.sleep(0.05)  # the next sweep, for a fixed span
        assert store.hlen(UNACKED_KEY) == 5
        # Its process dies (no close, no restore: a SIGKILL): the beats stop.
        gone.holders.stop()
        took_s = _sweep_until(sweeper, lambda: store.llen(queue) == 5, 10 * TTL_S)
    finally:
        sweeper.close()
        gone.close()
    assert store.hlen(UNACKED_KEY) == 0 and store.zcard("unacked_index") == 0
    assert store.hlen(HOLDER_OF_KEY) == 0
    print(f"restored 5 jobs of a gone holder {took_s:.1f} s after its beats stopped")
    assert took_s < 2 * TTL_S + 2


def test_two_sweepers_restore_each_entry_once(
    redis_server: RedisServer, store: redis.Redis
) -> None:
    queue = f"test-holders-{uuid.uuid4().hex[:6]}"
    _publish(redis_server.url, queue, 50)
    gone = Consumer(redis_server.url)
    gone.take(queue, 50)
    gone.holders.stop()  # a killed worker: no close, no more beats
    sweepers = [Consumer(redis_server.url) for _ in range(3)]
    for s in sweepers:
        s.take(queue, 0)
    restored: list[int] = []

    def sweep(s: Consumer) -> None:
        deadline = time.monotonic() + 10 * TTL_S
        while store.hlen(UNACKED_KEY) and time.monotonic() < deadline:
            store.delete(SWEEP_TOKEN_KEY)  # all three sweep at once, every round
            restored.append(s.holders.sweep(s.channel))
            time.sleep(0.01)  # the next round, deadline-bounded

    try:
        threads = [threading.Thread(target=sweep, args=(s,)) for s in sweepers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in [*sweepers, gone]:
            s.close()
    assert store.llen(queue) == 50 and store.hlen(UNACKED_KEY) == 0
    assert sum(restored) == 50


def test_presence_calls_a_job_with_a_gone_holder_missing(
    redis_server: RedisServer, store: redis.Redis
) -> None:
    queue = f"test-holders-{uuid.uuid4().hex[:6]}"
    _publish(redis_server.url, queue, 3)
    live, gone = Consumer(redis_server.url), Consumer(redis_server.url)
    plain = kombu.Connection(redis_server.url, transport=_transport(None))
    try:
        [held] = live.take(queue, 1)
        [lost] = gone.take(queue, 1)
        foreign = plain.default_channel.basic_get(queue, no_ack=False)
        gone.holders.stop()
        ids = {m.headers["id"] for m in (held, lost, foreign)}
        deadline = time.monotonic() + 10 * TTL_S
        while lost.headers["id"] in held_ids(store, [queue]):
            assert time.monotonic() < deadline, "a gone holder's job still counts as held"
            time.sleep(0.05)  # its holder's last beat running out, deadline-bounded
        found = held_ids(store, [queue])
        counts = depths(store, [queue])
    finally:
        for c in (live, gone):
            c.close()
        plain.release()
    # A consumer that keeps no holder record (not an inferq worker): held, as before.
    assert found == ids - {lost.headers["id"]}
    # `inferq queues` counts it apart: held by no live worker.
    assert counts["unacked_all_queues"] == 3 and counts["unacked_holder_gone"] == 1


def _redis_is_down(*_: Any, **__: Any) -> None:
    raise redis.exceptions.ConnectionError("Redis went away during the close")


def test_a_closed_channels_jobs_in_hand_stay_and_the_others_come_back(
    redis_server: RedisServer, store: redis.Redis
) -> None:
    """A channel closed while Redis was away could not restore its jobs: those the
    process still works on (the finisher acks them through the old channel) must not
    be run again, and a record whose message never reached the process (the
    connection broke between the pop and the delivery: issue 19) must come back."""
    queue = f"test-holders-{uuid.uuid4().hex[:6]}"
    _publish(redis_server.url, queue, 3)
    closing, sweeper = Consumer(redis_server.url), Consumer(redis_server.url)
    # The same process's connection after the reconnect, which its holders beat through.
    again = kombu.Connection(redis_server.url, transport=_transport(closing.holders))
    try:
        again.default_channel.holder_id()
        in_hand = closing.take(queue, 3)
        never_arrived = in_hand.pop()
        del closing.channel.qos._delivered[never_arrived.delivery_tag]  # recorded, not held
        # Its close meets a dead Redis: nothing restored. Celery's consumer collects the
        # connection, as here, and the finisher still acks through the old channel.
        closing.channel.qos.restore_unacked = _redis_is_down
        closing.conn.collect()
        sweeper.take(queue, 0)
        took_s = _sweep_until(sweeper, lambda: store.llen(queue) == 1, 10 * TTL_S)
        until = time.monotonic() + 3 * TTL_S  # the jobs in hand outlive several ttls
        while time.monotonic() < until:
            store.delete(SWEEP_TOKEN_KEY)
            assert sweeper.holders.sweep(sweeper.channel) == 0
            time.sleep(0.05)  # the next sweep, for a fixed span
        assert store.hlen(UNACKED_KEY) == 2
        for message in in_hand:
            message.ack()  # the finisher's ack, through the closed channel
    finally:
        sweeper.close()
        closing.holders.stop()
        again.release()
    [back] = store.lrange(queue, 0, -1)
    assert never_arrived.delivery_tag.encode() in back
    assert store.hlen(UNACKED_KEY) == 0 and store.hlen(HOLDER_OF_KEY) == 0
    print(f"the record that never arrived was back {took_s:.1f} s after the close")
