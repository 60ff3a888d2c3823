"""`inferq health` against real Redis and real workers, run as the probe would run it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from inferq.core.constants import HEALTH_COMMAND
from inferq.core.exit_codes import BROKER as EXIT_BROKER
from inferq.core.exit_codes import UNHEALTHY as EXIT_UNHEALTHY
from inferq.core.settings import Settings
from inferq.ops.health import NodeReport, problems
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_command import celery_command
from inferq.ops.worker_process import WorkerProcess
from tests.support.harness import cli_env


def health(
    *args: str, env: dict[str, str], importtime: bool = False
) -> tuple[subprocess.CompletedProcess[str], float]:
    flags = ["-X", "importtime"] if importtime else []
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, *flags, "-m", "inferq", "health", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc, time.monotonic() - started


def messages(stderr: str) -> list[str]:
    """stderr without the lines of ``-X importtime``."""
    return [line for line in stderr.splitlines() if not line.startswith("import time:")]


@pytest.mark.e2e
def test_healthy_with_the_session_worker_fast_and_without_tensorflow(
    worker: WorkerProcess, settings: Settings
) -> None:
    timeout_s = 10.0
    proc, elapsed_s = health(
        "--queues",
        "regression",
        "--timeout-s",
        str(timeout_s),
        env=cli_env(settings),
        importtime=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    node = worker.ready_file.read_text().splitlines()[0]
    assert proc.stdout.startswith(f"inferq health: ok: queue {settings.regression_queue}: {node}")
    assert "has the regressor" in proc.stdout
    assert messages(proc.stderr) == []
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
    assert not [name for name in imported if name.split(".")[0] in {"tensorflow", "keras"}]
    # Collecting stops at the first worker with the model: no wait for the timeout.
    assert elapsed_s < timeout_s


@pytest.mark.e2e
def test_unhealthy_when_no_worker_consumes_the_queue(
    worker: WorkerProcess, settings: Settings
) -> None:
    queue = f"test-vision-nobody-{uuid.uuid4().hex[:8]}"
    env = {**cli_env(settings), "INFERQ_VISION_QUEUE": queue}
    proc, _ = health("--queues", "regression,vision", "--timeout-s", "1", env=env)
    assert proc.returncode == EXIT_UNHEALTHY
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"inferq health: no worker consuming queue {queue} (")


@pytest.mark.e2e
def test_unhealthy_when_the_worker_has_not_loaded_the_model(
    redis_server: RedisServer, settings: Settings
) -> None:
    # A plain Celery worker on the queue, configured for another regression queue, so it
    # consumes this one without loading a model.
    queue = f"test-health-nomodel-{uuid.uuid4().hex[:8]}"
    node = f"nomodel-{queue}@localhost"
    argv = celery_command([queue], node, "INFO")
    env = {"INFERQ_REGRESSION_QUEUE": "test-health-elsewhere"}
    with WorkerProcess(redis_server.url, env=env, argv=argv):
        check_env = {**cli_env(settings), "INFERQ_REGRESSION_QUEUE": queue}
        proc, _ = health("--timeout-s", "1", env=check_env)
    assert proc.returncode == EXIT_UNHEALTHY
    [line] = proc.stderr.splitlines()
    expected = f"worker up but model not loaded: {node} consume queue {queue} without the regressor"
    assert line == f"inferq health: {expected}"


def test_unhealthy_when_redis_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Closed now: nothing listens there.
    env = {**os.environ, "INFERQ_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    proc, elapsed_s = health("--timeout-s", "2", env=env)
    assert proc.returncode == EXIT_BROKER
    [line] = proc.stderr.splitlines()
    assert line.startswith(
        f"inferq health: broker unreachable: cannot reach Redis at redis://127.0.0.1:{port}/0"
    )
    assert elapsed_s < 30


def test_an_unknown_queue_is_a_usage_error() -> None:
    proc, _ = health("--queues", "regresion", env=dict(os.environ))
    assert proc.returncode == 2
    assert "unknown queue(s) regresion" in proc.stderr


def test_workers_that_do_not_know_the_command_are_named() -> None:
    stranger = NodeReport.from_reply("other@h", {"error": "KeyError('inferq_health')"})
    served = NodeReport.from_reply(
        "w1@h", {"queues": ["regression"], "models": {"regressor": {"name": "r", "version": "v1"}}}
    )
    wanted = {"regression": "regressor", "vision": "classifier"}
    assert problems(wanted, [served], 2.0) == [
        "no worker consuming queue vision (1 other worker(s) answered within 2 s)"
    ]
    [found] = problems(wanted, [served, stranger], 2.0)
    assert found.startswith("no worker consuming queue vision (1 worker(s) did not know")
    assert HEALTH_COMMAND in found and "other@h" in found
    assert problems({"regression": "regressor"}, [served, stranger], 2.0) == []
