"""The anchors of `inferq bench stream` do the work they stand for: celery-batches in
the solo pool answers each job with the same dollars as an inferq worker, and a
phase's CPU is counted for the worker's process tree and the client."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from celery import Celery

from inferq.bench.anchors import ANCHOR_APP, BATCHES_PREDICT_TASK, POOL
from inferq.bench.measure import celery_phase, descendants, tree_cpu_s
from inferq.bench.phases import bench_app, send_all
from inferq.bench.stream import predict_payloads
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_command import celery_command
from inferq.ops.worker_process import WorkerProcess
from producer import Client

pytestmark = pytest.mark.e2e

QUEUE = "test-anchor-batches"
JOBS = 70  # more than one celery-batches flush (64)


@pytest.fixture(scope="module")
def anchor(redis_server: RedisServer, regressor_path: Path) -> Iterator[WorkerProcess]:
    argv = celery_command([QUEUE], "anchor@%h", "WARNING", "-P", POOL, app=ANCHOR_APP)
    env = {"INFERQ_REGRESSOR_PATH": str(regressor_path)}
    with WorkerProcess(redis_server.url, env=env, argv=argv) as proc:
        yield proc


@pytest.fixture(scope="module")
def app(redis_server: RedisServer, settings: Settings) -> Iterator[Celery]:
    app = bench_app(settings, redis_server.url)
    yield app
    app.close()


def test_celery_batches_answers_each_job_as_an_inferq_worker_does(
    anchor: WorkerProcess, app: Celery, client: Client
) -> None:
    payloads = predict_payloads(JOBS)
    results, _ = send_all(app, BATCHES_PREDICT_TASK, QUEUE, payloads)
    got = [r.get(timeout=60)["earnings_usd"][0] for r in results]
    expected = client.predict([p["rows"] for p in payloads], timeout_s=60).earnings_usd
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_a_phase_counts_the_worker_and_client_cpu_per_job(
    anchor: WorkerProcess, app: Celery
) -> None:
    phase = celery_phase(app, BATCHES_PREDICT_TASK, QUEUE, predict_payloads(JOBS), anchor.pid)
    assert phase["failed"] == 0 and phase["jobs_per_s"] > 0
    assert phase["worker_cpu_ms_per_job"] > 0 and phase["client_cpu_ms_per_job"] > 0


# A child that burns 0.3 s of CPU, says so, and waits for its stdin (its parent's) to close.
BURN = """
import sys, time
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
print(flush=True)
sys.stdin.read()
"""
SPAWN = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BURN!r}])"


def test_a_process_tree_counts_its_children() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", SPAWN], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert parent.stdout is not None
        parent.stdout.readline()  # the child has burnt its CPU
        assert len(descendants(parent.pid)) == 1
        assert tree_cpu_s(parent.pid) >= 0.3
    finally:
        parent.communicate(timeout=30)
