"""A batch's acks in one Redis round trip (worker.celeryapp.acks), against a real Redis
and kombu's Redis channel: what Celery's per-message ack would remove is removed, and
kombu's bookkeeping ends as after its own ack."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Queue
from vine import promise

from inferq.ops.redis_server import RedisServer
from worker.celeryapp.acks import ack_together

log = logging.getLogger(__name__)


class Loop:
    """The consumer's event loop, as far as acks go: ``call_soon_ack`` queues a callback
    that runs when the test says (on the consumer's thread, in a worker)."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], Any]] = []

    def call_soon_ack(self, p: Callable[..., Any], *args: Any) -> None:
        self.pending.append(lambda: p(*args))

    def run(self) -> None:
        pending, self.pending = self.pending, []
        for callback in pending:
            callback()


class Request:
    """What ack_together uses of celery.worker.request.Request, with the ack promise the
    consumer builds for each message (celery.worker.consumer.Consumer)."""

    def __init__(self, message: Any, loop: Loop) -> None:
        self.message = message
        self.acknowledged = False
        self._on_ack = promise(loop.call_soon_ack, (message.ack_log_error,))

    def acknowledge(self) -> None:
        self._on_ack(log, ())
        self.acknowledged = True


@pytest.fixture()
def store() -> Iterator[tuple[str, redis.Redis]]:
    with RedisServer() as server, redis.Redis.from_url(server.url) as client:
        yield server.url, client


def _received(url: str, count: int) -> tuple[Connection, list[Any]]:
    """``count`` messages sent and taken unacked from a queue of their own."""
    conn = Connection(url)
    queue = Queue(f"test-acks-{uuid.uuid4().hex[:8]}")
    channel = conn.channel()
    bound = queue(channel)
    bound.declare()
    producer = conn.Producer(channel)
    for i in range(count):
        producer.publish({"job": i}, routing_key=bound.name, serializer="json")
    messages = [bound.get(no_ack=False) for _ in range(count)]
    assert all(m is not None for m in messages)
    return conn, messages


def _execs(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_exec", {}).get("calls", 0))


def test_a_batch_is_acked_in_one_round_trip_on_the_loop(store: tuple[str, redis.Redis]) -> None:
    url, client = store
    conn, messages = _received(url, 5)
    try:
        loop = Loop()
        tags = [m.delivery_tag for m in messages]
        assert all(client.hexists("unacked", tag) for tag in tags)
        requests = [Request(m, loop) for m in messages]
        ack_together(requests)
        assert all(r.acknowledged for r in requests)
        assert len(loop.pending) == 1  # one callback for the batch, not one a message
        assert all(client.hexists("unacked", tag) for tag in tags)  # not before the loop
        execs = _execs(client)
        loop.run()
        assert _execs(client) == execs + 1
        assert not any(client.hexists("unacked", tag) for tag in tags)
        assert not any(client.zscore("unacked_index", tag) for tag in tags)
        assert all(m.acknowledged for m in messages)
        assert messages[0].channel.qos.can_consume()
    finally:
        conn.release()


def test_what_the_batch_cannot_take_is_acked_by_celery_alone(
    store: tuple[str, redis.Redis],
) -> None:
    url, client = store
    conn, messages = _received(url, 3)
    try:
        loop = Loop()
        requests = [Request(m, loop) for m in messages]
        # After a reconnect Celery chains work to an ack's promise: that one goes alone.
        requests[0]._on_ack.then(lambda *_: None)
        requests[1].acknowledge()  # acked already: not again
        ack_together(requests)
        assert len(loop.pending) == 3  # [1]'s own ack, then [0] alone and [2] batched
        assert all(r.acknowledged for r in requests)
        ack_together(requests)  # all acknowledged now: nothing more
        assert len(loop.pending) == 3
        loop.run()
        assert not any(client.hexists("unacked", m.delivery_tag) for m in messages)
    finally:
        conn.release()
