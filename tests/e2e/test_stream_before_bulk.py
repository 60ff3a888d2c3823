"""A stream job sent while a bulk chunk runs goes ahead of the chunk's queued rows
(worker.engine.batching's two lanes): real Redis, a real worker, the real model."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from inferq.core.constants import COURSE_FEATURES
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess
from inferq.tools.sample_data import generate
from producer import Client

CHUNK_ROWS = 262_144  # the chunk limit: 4,096 bulk passes of 64 rows, seconds of work
BULK_PASS_ROWS = 64


def _passes(port: int) -> float:
    """Forward passes this worker has run (its metrics endpoint)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "inferq_batch_rows_count"
    )


@pytest.fixture(scope="module")
def bulk_worker(
    redis_server: RedisServer, worker_env: dict[str, str]
) -> Iterator[tuple[WorkerProcess, Settings]]:
    # Small bulk passes make one chunk a long run of passes, so a stream job sent
    # mid-chunk has thousands of queued chunk rows to pass (or to wait behind).
    env = {
        **worker_env,
        "INFERQ_REGRESSION_QUEUE": "test-stream-before-bulk",
        "INFERQ_BULK_BATCH_SIZE": str(BULK_PASS_ROWS),
        "INFERQ_METRICS_PORT": "0",
    }
    with WorkerProcess(redis_server.url, env=env) as proc:
        yield proc, Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})


@pytest.mark.e2e
def test_a_stream_job_mid_chunk_is_answered_before_the_chunks_rows(
    bulk_worker: tuple[WorkerProcess, Settings],
) -> None:
    proc, settings = bulk_worker
    port = int(proc.ready_file.read_text().splitlines()[2])
    cols = generate(CHUNK_ROWS, seed=5)
    x = np.column_stack([cols[f] for f in COURSE_FEATURES])
    row = {f: float(cols[f][0]) for f in COURSE_FEATURES}
    with Client(settings) as client:
        version = client.regressor_info().model.version
        before = _passes(port)
        chunk = client.submit_chunk("stream-before-bulk", list(COURSE_FEATURES), x, version)
        deadline = time.monotonic() + 60
        while _passes(port) < before + 10:  # the chunk's rows are queued and running
            assert time.monotonic() < deadline, "the chunk's passes never started"
            time.sleep(0.01)  # polling the metrics endpoint, bounded by the deadline
        job = client.submit(row).wait(30)
        chunk_done_first = client.app.AsyncResult(chunk.id).ready()
        result = chunk.wait(120)
    assert not chunk_done_first, "the chunk ended before the stream job: nothing was tested"
    # Behind the chunk's queued rows it would wait for thousands of passes; ahead of
    # them, for the pass in progress at most (and its batch window).
    assert job.timings_ms.batch_wait_ms < 250
    assert result.rows == CHUNK_ROWS and result.passes == CHUNK_ROWS // BULK_PASS_ROWS
    assert not result.row_errors
