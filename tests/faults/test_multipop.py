"""Many entries per pop (worker.celeryapp.multipop), on real Redis servers: the bundled
6.2 and, where one is on PATH, 7.

Entries come in queue order, a take never holds more than the free prefetch slots, a
higher priority's entries come first, every entry is recorded as unacked with its
holder in the same step that takes it (and an ack clears it), a Redis out of memory
refuses a take before anything moves, and an entry the script cannot read ends the
take and is left for BRPOP.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kombu
import pytest
import redis
from kombu.transport import redis as kombu_redis

from inferq.core.kombu_keys import HOLDER_OF_KEY
from inferq.ops.redis_server import RedisServer, redis_server_binary
from tests.support.redis_clients import redis_client
from worker.celeryapp import multipop
from worker.celeryapp.channel import ReconnectSafeChannel
from worker.celeryapp.holders import Holders

pytestmark = pytest.mark.e2e


def _binaries() -> list[Any]:
    found = {redis_server_binary()}
    on_path = shutil.which("redis-server")
    if on_path is not None:
        found.add(Path(on_path))
    return [pytest.param(path, id=_version(path)) for path in sorted(found)]


def _version(binary: Path) -> str:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True)
    return "redis-" + out.stdout.split("v=", 1)[1].split()[0]


class _Transport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = ReconnectSafeChannel  # per connection here; a worker installs it process-wide


@pytest.fixture(params=_binaries())
def server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    with RedisServer(binary=request.param) as srv:
        yield srv


def _consume(url: str, queue: kombu.Queue, prefetch: int, on_take: Any) -> Any:
    """A consumer on ``queue`` with ``prefetch`` slots; ``on_take`` sees each delivery."""
    conn = kombu.Connection(url, transport=_Transport)
    consumer = conn.Consumer(queue, callbacks=[on_take], accept=["json"])
    consumer.qos(prefetch_count=prefetch)
    consumer.consume()
    return conn, consumer


def _drain(conn: Any, until: Any, timeout_s: float = 10.0) -> None:
    while not until():
        conn.drain_events(timeout=timeout_s)


def test_a_take_keeps_queue_order_and_the_prefetch_limit(server: RedisServer) -> None:
    srv, command = server, "EVAL"
    queue = kombu.Queue("mp-order")
    got: list[tuple[int, str, int]] = []  # (i, the pop's command, messages held then)
    with kombu.Connection(srv.url) as sender:
        producer = sender.Producer()
        for i in range(40):
            producer.publish({"i": i}, routing_key=queue.name, declare=[queue])
    conn, consumer = _consume(srv.url, queue, 8, None)

    def on_take(body: dict[str, int], message: Any) -> None:
        channel = consumer.channel
        got.append((body["i"], channel._popping, len(channel.qos._delivered)))
        if len(got) % 8 == 0:  # the slots are full: ack all, as a finished batch would
            for tag in list(channel.qos._delivered):
                channel.qos.ack(tag)

    consumer.callbacks = [on_take]
    with conn:
        _drain(conn, lambda: len(got) == 40)
    assert [i for i, _, _ in got] == list(range(40))
    assert max(held for _, _, held in got) <= 8
    assert sum(1 for _, cmd, _ in got if cmd == command) >= 32  # all but a first pop's
    assert multipop.MAX_TAKE >= 8


def test_a_take_records_every_entry_with_its_holder_and_ack_clears_it(
    server: RedisServer,
) -> None:
    srv = server
    queue = kombu.Queue("mp-record")
    store = redis_client(srv.url)
    holders = Holders(10.0, node="test-multipop")
    ReconnectSafeChannel.holders = holders
    try:
        with kombu.Connection(srv.url) as sender:
            for i in range(10):
                sender.Producer().publish({"i": i}, routing_key=queue.name, declare=[queue])
        seen: list[Any] = []
        conn, _consumer = _consume(srv.url, queue, 64, lambda body, message: seen.append(message))
        with conn:
            _drain(conn, lambda: len(seen) == 10)
            tags = {m.delivery_tag for m in seen}
            assert {t.decode() for t in store.hkeys("unacked")} == tags
            holder_of = {k.decode(): v for k, v in store.hgetall(HOLDER_OF_KEY).items()}
            assert set(holder_of) == tags and len(set(holder_of.values())) == 1
            for message in seen:
                message.ack()
            assert store.hlen("unacked") == 0 and store.hlen(HOLDER_OF_KEY) == 0
    finally:
        ReconnectSafeChannel.holders = None
        holders.stop()
        store.close()


def test_a_take_serves_the_higher_priority_first(server: RedisServer) -> None:
    srv = server
    queue = kombu.Queue("mp-priority", max_priority=9)
    with kombu.Connection(srv.url) as sender:
        producer = sender.Producer()
        for i in range(6):
            producer.publish(
                {"i": i}, routing_key=queue.name, declare=[queue], priority=9 if i < 3 else 0
            )
    got: list[int] = []
    conn, _consumer = _consume(srv.url, queue, 64, lambda body, message: got.append(body["i"]))
    with conn:
        _drain(conn, lambda: len(got) == 6)
    # kombu's Redis priorities: a lower number is served first (0 before 9).
    assert got == [3, 4, 5, 0, 1, 2]


def _take(store: redis.Redis, keys: list[str], count: int = 64) -> Any:
    indexes = ("unacked_index", "unacked", HOLDER_OF_KEY)
    args = (count, "1700000000.5", "holder-1", multipop.TAKE_MAX_BYTES)
    return store.eval(multipop.TAKE_SCRIPT, len(keys) + 3, *indexes, *keys, *args)


def _entry(tag: str) -> str:
    info = {"exchange": "", "routing_key": "q"}
    return json.dumps({"body": "e30=", "properties": {"delivery_tag": tag, "delivery_info": info}})


def test_a_redis_out_of_memory_refuses_a_take_before_anything_moves(server: RedisServer) -> None:
    store = redis_client(server.url)
    store.lpush("q", *(_entry(f"t{i}") for i in range(3)))
    store.config_set("maxmemory-policy", "noeviction")
    store.config_set("maxmemory", 1)
    with pytest.raises(redis.ResponseError, match=r"OOM|maxmemory"):
        _take(store, ["q"])
    store.config_set("maxmemory", 0)
    assert store.llen("q") == 3 and not store.exists("unacked", "unacked_index", HOLDER_OF_KEY)
    store.close()


def test_an_entry_the_script_cannot_read_ends_the_take(server: RedisServer) -> None:
    store = redis_client(server.url)
    # Oldest first: two good entries, one that is not JSON, one more good entry.
    for raw in (_entry("a"), _entry("b"), b"\xff not json", _entry("c")):
        store.lpush("q", raw)
    key, flat = _take(store, ["empty", "q"])
    assert key == b"q" and flat[1::2] == [b"a", b"b"]
    assert json.loads(store.hget("unacked", "a"))[1:] == ["", "q"]  # kombu's record
    assert store.hget(HOLDER_OF_KEY, "b") == b"holder-1"
    assert _take(store, ["q"]) is None  # the bad entry waits for BRPOP
    assert store.rpop("q") == b"\xff not json"
    assert _take(store, ["q"])[1][1::2] == [b"c"]
    store.close()
