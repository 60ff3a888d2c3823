"""A fuzzer against a live worker: random queue entries, kombu envelopes, Celery headers
and bodies pushed onto its served queue, each followed by a good job.

Invariants, checked after every example: the worker process is up; the good job is
answered with the model's own value; an entry that names a task id gets a typed
answer (a result or an InferqError, never silence); an entry that is not even a JSON
envelope is in the dead-letter list with its raw bytes. At the end nothing is left
queued or unacked. `python3.11 dev.py fuzz N` runs N examples instead of the suite's few.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from celery.exceptions import TimeoutError as CeleryTimeout
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferq.core.constants import DEAD_LETTER_KEY, PREDICT_TASK
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess
from producer import Client
from producer.handles import failure
from tests.support.delivery import held_by_redis, rows
from tests.support.messages import real_envelope
from tests.support.served import served_regressor

pytestmark = pytest.mark.e2e

QUEUE = "test-fuzz"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
ROWS = rows(8)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def fuzzed(
    redis_server: RedisServer, worker_env: dict[str, str]
) -> Iterator[tuple[WorkerProcess, Client, redis.Redis, dict[str, Any]]]:
    env = {**worker_env, "INFERQ_REGRESSION_QUEUE": QUEUE, "INFERQ_MAX_MESSAGE_BYTES": "65536"}
    settings = Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})
    store = redis.Redis.from_url(redis_server.url)
    with WorkerProcess(redis_server.url, env=env) as worker, Client(settings) as client:
        yield worker, client, store, _template(client, store)
    store.close()


def _template(client: Client, store: redis.Redis) -> dict[str, Any]:
    return real_envelope(client, store, PREDICT_TASK, {"rows": ROWS[0]})


@st.composite
def entries(draw: st.DrawFn, template: dict[str, Any]) -> bytes:
    """Raw bytes, JSON, or a real envelope with parts replaced, dropped or corrupted."""
    kind = draw(st.sampled_from(["bytes", "json", "envelope", "body", "headers", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    if kind == "deep":
        depth = draw(st.integers(1000, 20000))
        return b"[" * depth + b"]" * depth
    envelope = json.loads(json.dumps(template))
    envelope["headers"]["id"] = str(uuid.uuid4())
    envelope["properties"]["delivery_tag"] = str(uuid.uuid4())
    if kind == "envelope":
        part = draw(st.sampled_from(["properties", "body", "headers", "content-type"]))
        if draw(st.booleans()):
            envelope.pop(part, None)
        else:
            envelope[part] = draw(JSON)
    elif kind == "body":
        body = draw(st.one_of(JSON.map(json.dumps), st.text(max_size=30)))
        envelope["body"] = base64.b64encode(body.encode()).decode()
        if draw(st.booleans()):
            envelope["properties"]["body_encoding"] = draw(
                st.sampled_from([None, "rot13", "utf-8"])
            )
    else:
        key = draw(st.sampled_from(["task", "id", "timelimit", "eta", "expires", "argsrepr"]))
        envelope["headers"][key] = draw(JSON)
    return json.dumps(envelope).encode()


def _task_id(raw: bytes) -> str | None:
    try:
        headers = json.loads(raw).get("headers")
        task_id = headers.get("id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return task_id if isinstance(task_id, str) and task_id else None


def _is_envelope(raw: bytes) -> bool:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and isinstance(value.get("properties"), dict)


@pytest.fixture(scope="module")
def expected(regressor_path: Any) -> list[float]:
    with served_regressor(Settings.load({}, regressor_path=regressor_path)) as served:
        x = served.meta.scale_features(np.array([list(r.values()) for r in ROWS]))
        y, _ = served.runner.infer(x.astype(np.float32), timeout_s=30)
        return [float(v) for v in served.meta.to_dollars(y)]


def test_no_queue_entry_stops_the_worker_or_goes_unanswered(
    fuzzed: tuple[WorkerProcess, Client, redis.Redis, dict[str, Any]], expected: list[float]
) -> None:
    worker, client, store, template = fuzzed

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(raw=entries(template), which=st.integers(0, len(ROWS) - 1))
    def one(raw: bytes, which: int) -> None:
        store.lpush(QUEUE, raw)
        good = client.submit(ROWS[which])
        value = good.wait(30).earnings_usd[0]
        assert value == pytest.approx(expected[which], rel=1e-5)
        task_id = _task_id(raw)
        if task_id is not None:
            _answered_typed(client, task_id)
        if not _is_envelope(raw):
            assert raw in _dead_raw(store), f"{raw[:60]!r} not dead-lettered"
        assert worker.process is not None and worker.process.poll() is None

    one()
    queued, unacked = held_by_redis(store, QUEUE)
    assert not queued and not unacked


def _answered_typed(client: Client, task_id: str) -> None:
    result = client.app.AsyncResult(task_id)
    try:
        value = result.get(timeout=30, propagate=False)
    except CeleryTimeout:
        pytest.fail(f"entry with task id {task_id} got no answer")
    if result.state != "SUCCESS":
        # failure() is what the client makes of it: typed, or worker_error when untyped.
        code = failure(result.state, value).info.get("code")
        assert code != "worker_error", f"{task_id}: {result.state} {value!r}"


def _dead_raw(store: redis.Redis) -> set[bytes]:
    letters: list[bytes] = store.lrange(DEAD_LETTER_KEY, 0, -1)  # type: ignore[assignment]
    return {base64.b64decode(json.loads(letter)["raw_b64"]) for letter in letters}
