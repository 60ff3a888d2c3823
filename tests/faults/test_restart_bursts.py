"""Redis restarted in the middle of bursts of one-row jobs, again and again: every job
answered within 30 s of Redis being back, and nothing left in ``unacked``.

Issue 19: after a restart one job stayed in kombu's unacked hash with no worker holding
it (its record written, the connection broken before the message was handed over), and
came back only after the visibility timeout, an hour. Here the visibility timeout is
that hour, so only the holders' sweep (worker.celeryapp.holders) can bring such a job
back in time. Redis runs with AOF (everysec) and is stopped with SIGTERM and SIGKILL in
turn, a varied fraction of a second after a burst was sent, under one worker and under
two. The producer resends what Redis lost outright (the BRPOP gap, the last second of
writes of a SIGKILL): docs/delivery.md.

CI runs 10 restarts per worker count (20 in all) with bursts of 100 jobs;
``RESTART_TEST_RESTARTS`` (per worker count) and ``RESTART_TEST_BURST`` make it larger
(not INFERQ_*: the suite clears those).
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from inferq.core.contract import PredictResult
from inferq.core.kombu_keys import HOLDER_OF_KEY, HOLDERS_KEY, UNACKED_KEY
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess
from producer import Client, Handle
from tests.support import delivery
from tests.support.delivery import executions, rows
from tests.support.redis_clients import redis_client

pytestmark = pytest.mark.e2e

RESTARTS = int(os.environ.get("RESTART_TEST_RESTARTS", "10"))
BURST = int(os.environ.get("RESTART_TEST_BURST", "100"))
ANSWERED_WITHIN_S = 30.0  # of Redis being back
RESEND_AFTER_S = 3.0  # the producer's cover for what Redis lost outright


@dataclass
class Figures:
    restarts: int = 0
    jobs: int = 0
    slowest_s: float = 0.0  # the latest answer, counted from Redis being back
    unacked_clear_s: float = 0.0  # the latest moment unacked was empty, likewise
    kills: dict[str, int] = field(default_factory=dict)


def _restart(server: RedisServer, sig: signal.Signals) -> float:
    """Stop Redis with ``sig`` and start it again at once; when it answered again."""
    assert server.process is not None
    server.process.send_signal(sig)
    server.process.wait(timeout=30)
    server.process = None
    server.start()
    return time.monotonic()


def _burst(
    client: Client, server: RedisServer, sig: signal.Signals, delay_s: float, figures: Figures
) -> None:
    handles: list[Handle[PredictResult]] = [client.submit(row) for row in rows(BURST)]
    time.sleep(delay_s)  # the moment of the fault, varied on purpose (not a wait)
    back_at = _restart(server, sig)
    answered: dict[str, PredictResult] = {}
    for handle, outcome in client.as_completed(
        handles, timeout_s=ANSWERED_WITHIN_S, resend_after_s=RESEND_AFTER_S
    ):
        assert isinstance(outcome, PredictResult), outcome
        answered[handle.id] = outcome
        figures.slowest_s = max(figures.slowest_s, time.monotonic() - back_at)
    assert len(answered) == BURST
    store = redis_client(server.url)
    # Nothing parked: what the outage left unacked (a restore that met the dead Redis, a
    # record whose message never reached a worker) is back and answered, or acked.
    while (left := store.hlen(UNACKED_KEY)) > 0:
        waited_s = time.monotonic() - back_at
        assert waited_s < ANSWERED_WITHIN_S, (
            f"{left} job(s) still unacked after {waited_s:.1f} s, held by "
            f"{store.hgetall(HOLDER_OF_KEY)}; holders alive until "
            f"{store.zrange(HOLDERS_KEY, 0, -1, withscores=True)}, Redis time {store.time()}"
        )
        time.sleep(0.05)  # polling Redis, deadline-bounded
    store.close()
    figures.unacked_clear_s = max(figures.unacked_clear_s, time.monotonic() - back_at)
    figures.restarts += 1
    figures.jobs += BURST
    figures.kills[sig.name] = figures.kills.get(sig.name, 0) + 1


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers"])
def test_redis_restarted_mid_burst_again_and_again(
    worker_env: dict[str, str], tmp_path: Path, workers: int
) -> None:
    queue = f"test-restarts-{uuid.uuid4().hex[:6]}"
    env = {
        **worker_env,
        "INFERQ_REGRESSION_QUEUE": queue,
        "INFERQ_VISIBILITY_TIMEOUT_S": "3600",  # kombu's own redelivery is no help here
        "INFERQ_MAX_WAIT_MS": "20",
    }
    figures = Figures()
    moments = random.Random(19 + workers)
    logs = [tmp_path / f"worker-{i}.log" for i in range(workers)]
    with ExitStack() as stack:
        server = stack.enter_context(RedisServer(appendonly=True))
        for log in logs:
            stack.enter_context(WorkerProcess(server.url, env=env, log_path=log))
        settings = Settings.load({**env, "INFERQ_REDIS_URL": server.url})
        client = stack.enter_context(Client(settings))
        stack.callback(delivery.drop_subscriptions, client)
        for i in range(RESTARTS):
            sig = signal.SIGKILL if i % 2 else signal.SIGTERM
            _burst(client, server, sig, moments.uniform(0.0, 0.5), figures)
    runs = executions(*logs)
    text = " ".join(log.read_text() for log in logs)
    assert "Unrecoverable error" not in text
    twice = sum(n > 1 for n in runs.values())
    print(
        f"{workers} worker(s): {figures.restarts} Redis restarts {figures.kills}, "
        f"{figures.jobs} jobs, all answered; slowest answer {figures.slowest_s:.1f} s after "
        f"Redis was back; unacked empty {figures.unacked_clear_s:.1f} s after at the latest; "
        f"{twice} run twice; {text.count('whose holder is gone')} sweep(s) restored jobs"
    )
