"""`inferq queues` against a real Redis: the counts an autoscaler would scale on."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

from celery import Celery

from inferq.core.celery_config import celery_config
from inferq.core.constants import PREDICT_TASK
from inferq.core.exit_codes import BROKER as EXIT_BROKER
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer, free_port
from tests.support.harness import run_inferq


def queues_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_inferq("queues", *args, env={**os.environ, **env}, timeout_s=60)


def test_waiting_jobs_are_counted_at_every_priority(redis_server: RedisServer) -> None:
    """Nobody consumes these private queues: every job sent is waiting, including those
    sent with a priority (kombu keeps them in lists of their own)."""
    tag = uuid.uuid4().hex[:8]
    env = {
        "INFERQ_REDIS_URL": redis_server.url,
        "INFERQ_REGRESSION_QUEUE": f"test-queues-r-{tag}",
        "INFERQ_VISION_QUEUE": f"test-queues-v-{tag}",
    }
    app = Celery("test-queues", set_as_current=False)
    app.conf.update(celery_config(Settings.load(env)))
    queue = env["INFERQ_REGRESSION_QUEUE"]
    for priority in (None, None, None, 4, 9):
        app.send_task(PREDICT_TASK, kwargs={"rows": {}}, queue=queue, priority=priority)
    app.close()
    proc = queues_cli("--json", env=env)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["queues"] == {queue: 5, env["INFERQ_VISION_QUEUE"]: 0}
    assert found["unacked_all_queues"] >= 0
    text = queues_cli("--queues", "regression", env=env)
    assert text.stdout.splitlines()[0] == f"{queue}\t5 waiting"


def test_an_unreachable_broker_and_an_unknown_queue_are_clear_errors() -> None:
    down = queues_cli(env={"INFERQ_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert down.returncode == EXIT_BROKER
    assert "broker unreachable" in down.stderr
    unknown = queues_cli("--queues", "audio", env={})
    assert unknown.returncode == 2
    assert "unknown queue(s) audio" in unknown.stderr
