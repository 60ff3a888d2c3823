"""Resends do not pile up: a job Redis still holds (queued or unacked) is not resent.

Thousands of jobs wait behind a slow worker while the client's resend interval is
short: every job runs exactly once. A job Redis really lost (taken off the queue and
never recorded) is still resent and answered.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from inferq.core.constants import PREDICT_TASK
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess
from producer import Client
from tests.support.delivery import executions, rows
from tests.support.redis_clients import redis_client

pytestmark = pytest.mark.e2e

JOBS = 3000


def test_a_backlog_is_never_resent(
    redis_server: RedisServer, worker_env: dict[str, str], tmp_path: Path
) -> None:
    queue = f"test-backlog-{uuid.uuid4().hex[:6]}"
    env = {
        **worker_env,
        "INFERQ_REGRESSION_QUEUE": queue,
        "INFERQ_MAX_BATCH_SIZE": "2",
        "INFERQ_JOB_SLOTS": "4",  # a slow worker: few jobs at a time, the rest queued
    }
    settings = Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})
    log = tmp_path / "worker.log"
    with Client(settings) as client:
        handles = [client.submit(row) for row in rows(JOBS)]
        with WorkerProcess(redis_server.url, env=env, log_path=log):
            answered = list(client.as_completed(handles, timeout_s=300, resend_after_s=0.3))
    assert len(answered) == JOBS and all(not isinstance(o, Exception) for _, o in answered)
    ran = executions(log)
    assert set(ran) == {h.id for h in handles}
    assert [job for job, times in ran.items() if times != 1] == []


def test_a_job_redis_lost_is_still_resent(
    redis_server: RedisServer, worker_env: dict[str, str]
) -> None:
    queue = f"test-lost-{uuid.uuid4().hex[:6]}"
    env = {**worker_env, "INFERQ_REGRESSION_QUEUE": queue}
    settings = Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})
    store = redis_client(redis_server.url)
    with Client(settings) as client:
        handle = client.submit(rows(1)[0])
        lost = store.rpop(queue)  # popped and never recorded: the BRPOP gap, by hand
        assert json.loads(lost)["headers"]["task"] == PREDICT_TASK  # type: ignore[arg-type]
        with WorkerProcess(redis_server.url, env=env):
            result = handle.wait(60, resend_after_s=0.5)
    assert result.earnings_usd[0] > 0
    store.close()
