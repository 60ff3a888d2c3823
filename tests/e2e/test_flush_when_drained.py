"""A lone job does not wait out the batch window when the worker's queues are empty
(worker.celeryapp.multipop tells the worker; INFERQ_FLUSH_WHEN_DRAINED, on by default),
and with the setting off it does, as before."""

from __future__ import annotations

import pytest

from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess
from producer import Client
from tests.support.delivery import rows

pytestmark = pytest.mark.e2e

WAIT_MS = 3000  # a batch window so long that only the flush can end it sooner


@pytest.mark.parametrize("flush", [True, False], ids=["flush on (default)", "flush off"])
def test_a_lone_job_waits_its_window_only_when_asked_to(
    redis_server: RedisServer, worker_env: dict[str, str], flush: bool
) -> None:
    env = {
        **worker_env,
        "INFERQ_REGRESSION_QUEUE": f"test-flush-{flush}".lower(),
        "INFERQ_MAX_WAIT_MS": str(WAIT_MS),
    }
    if not flush:
        env["INFERQ_FLUSH_WHEN_DRAINED"] = "false"
    settings = Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})
    with WorkerProcess(redis_server.url, env=env), Client(settings) as client:
        for row in rows(3):
            waited_ms = client.predict(row, timeout_s=30).timings_ms.batch_wait_ms
            if flush:
                assert waited_ms < WAIT_MS / 3, waited_ms
            else:
                assert waited_ms >= WAIT_MS * 0.95, waited_ms
