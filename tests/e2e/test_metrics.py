"""Prometheus metrics: real worker processes, real jobs, the endpoint scraped over HTTP."""

from __future__ import annotations

import math
import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from inferq.core.constants import COURSE_FEATURES, PREDICT_TASK
from inferq.core.modelfile import file_version
from inferq.core.settings import Settings
from inferq.errors import ContentRefused, InvalidInput, InvalidMessage
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess, WorkerStartError
from inferq.tools.sample_data import generate
from producer import Client
from tests.support.harness import E2E_MAX_BATCH
from tests.support.messages import send_pickle, send_raw
from worker.engine.runner import bucket_for, bucket_sizes_for
from worker.metrics import port_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
JOB = {"task": PREDICT_TASK, "model": "regressor"}
HISTOGRAMS = ("inferq_batch_rows", "inferq_queue_wait_seconds", "inferq_inference_seconds")


def _rows(n: int, seed: int) -> list[dict[str, float]]:
    cols = generate(n, seed)
    return [{f: float(cols[f][i]) for f in COURSE_FEATURES} for i in range(n)]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def scrape_when_counted(port: int, before: Samples, jobs: int, timeout_s: float = 10) -> Samples:
    """The samples once ``jobs`` more jobs are counted: a job is counted just after its
    answer is stored, so a caller holding every answer may scrape a moment early."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(port)
        if delta(samples, before, "inferq_jobs_total") >= jobs or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)  # polling an HTTP endpoint, bounded by the deadline


def ready_port(proc: WorkerProcess) -> int:
    """The metrics port from the ready file: node name, pid, metrics port."""
    return int(proc.ready_file.read_text().splitlines()[2])


def free_ports(n: int) -> int:
    """A base port with ``n`` consecutive ports free now (a later bind may still lose a race)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + n <= 65536 and all(_free(base + i) for i in range(n)):
            return base
    raise RuntimeError(f"no {n} consecutive free ports found")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_port_for_adds_the_process_index_except_for_zero() -> None:
    assert port_for(Settings.load({})) is None
    assert port_for(Settings.load({"INFERQ_METRICS_PORT": "9808"})) == 9808
    indexed = {"INFERQ_METRICS_PORT": "9808", "INFERQ_PROCESS_INDEX": "3"}
    assert port_for(Settings.load(indexed)) == 9811
    assert port_for(Settings.load({**indexed, "INFERQ_METRICS_PORT": "0"})) == 0


@pytest.fixture(scope="module")
def metrics_worker(
    redis_server: RedisServer, worker_env: dict[str, str]
) -> Iterator[tuple[WorkerProcess, Settings]]:
    env = {
        **worker_env,
        "INFERQ_REGRESSION_QUEUE": "test-metrics",
        "INFERQ_METRICS_PORT": "0",
        "INFERQ_METRICS_HOST": "127.0.0.1",
    }
    with WorkerProcess(redis_server.url, env=env) as proc:
        yield proc, Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})


@pytest.mark.e2e
def test_a_free_port_is_chosen_and_announced(
    metrics_worker: tuple[WorkerProcess, Settings], regressor_path: Path
) -> None:
    proc, _ = metrics_worker
    port = ready_port(proc)
    assert port > 0
    assert f"metrics_port={port}" in proc.log_tail(100_000)
    samples = scrape(port)
    version = file_version(regressor_path)
    info = {("kind", "regressor"), ("model", "regressor"), ("version", version)}
    assert samples[("inferq_model_info", frozenset(info))] == 1
    assert total(samples, "process_cpu_seconds_total") > 0


@pytest.mark.e2e
def test_jobs_rows_and_passes_add_up(metrics_worker: tuple[WorkerProcess, Settings]) -> None:
    proc, settings = metrics_worker
    port = ready_port(proc)
    # Jobs of 1..5 rows, two larger than a batch (split over several passes), and bad ones.
    good = [_rows(1 + i % 5, seed=i) for i in range(40)] + [_rows(40, 100), _rows(17, 101)]
    bad = [[{**row, "unit_price": "free"}] for row in _rows(7, seed=200)]
    before = scrape(port)
    with Client(settings) as client:
        good_results = [h.wait(60) for h in [client.submit(rows) for rows in good]]
        bad_handles = [client.submit(rows) for rows in bad]
        for handle in bad_handles:
            with pytest.raises(InvalidInput):
                handle.wait(60)
    after = scrape_when_counted(port, before, len(good) + len(bad))

    assert delta(after, before, "inferq_jobs_total", **JOB, outcome="ok") == len(good)
    assert delta(after, before, "inferq_jobs_total", **JOB, outcome="invalid_input") == len(bad)
    assert delta(after, before, "inferq_jobs_total") == len(good) + len(bad)
    assert delta(after, before, "inferq_job_seconds_count", **JOB) == len(good) + len(bad)
    # Bad jobs are refused before stacking: only the good rows reach the model.
    rows_sent = sum(len(rows) for rows in good)
    assert delta(after, before, "inferq_batch_rows_sum", model="regressor") == rows_sent
    parts = sum(math.ceil(len(rows) / E2E_MAX_BATCH) for rows in good)
    assert delta(after, before, "inferq_queue_wait_seconds_count", model="regressor") == parts
    passes = delta(after, before, "inferq_batch_rows_count", model="regressor")
    assert delta(after, before, "inferq_inference_seconds_count", model="regressor") == passes
    batch_ids = {r.batch.id for r in good_results}
    assert len(batch_ids) <= passes <= parts
    padded = delta(after, before, "inferq_batch_padded_rows_total", model="regressor")
    # Each pass is padded to its bucket: the one-pass jobs' batches tell their bucket.
    seen = {r.batch.id: r.batch for r in good_results if r.batch.passes == 1}
    buckets = bucket_sizes_for(E2E_MAX_BATCH)
    assert all(b.padded_rows == bucket_for(b.rows, buckets) for b in seen.values())
    assert rows_sent <= padded < 2 * rows_sent
    assert delta(after, before, "inferq_batch_failures_total") == 0
    _histograms_are_consistent(after)


def test_refused_messages_are_counted_without_a_model(
    metrics_worker: tuple[WorkerProcess, Settings],
) -> None:
    """Answered before any task body ran: counted, so a flood of them shows."""
    proc, settings = metrics_worker
    port = ready_port(proc)
    queue = settings.regression_queue
    before = scrape(port)
    with Client(settings) as client:
        pickled = send_pickle(client.app, PREDICT_TASK, {"rows": {}}, queue)
        garbled = send_raw(client.app, queue, PREDICT_TASK, b"{rows: [}")
        with pytest.raises(ContentRefused):
            pickled.get(timeout=60)
        with pytest.raises(InvalidMessage):
            garbled.get(timeout=60)
    after = scrape_when_counted(port, before, 2)
    refused = {"task": PREDICT_TASK, "model": "none"}
    assert delta(after, before, "inferq_jobs_total", **refused, outcome="content_refused") == 1
    assert delta(after, before, "inferq_jobs_total", **refused, outcome="invalid_message") == 1
    assert delta(after, before, "inferq_jobs_total") == 2
    assert delta(after, before, "inferq_job_seconds_count", **JOB) == 0


def _histograms_are_consistent(samples: Samples) -> None:
    for name in HISTOGRAMS:
        buckets = sorted(
            (float(dict(labels)["le"]), value)
            for (n, labels), value in samples.items()
            if n == f"{name}_bucket" and ("model", "regressor") in labels
        )
        counts = [value for _, value in buckets]
        assert counts == sorted(counts), f"{name}: cumulative buckets must not decrease"
        assert buckets[-1] == (math.inf, total(samples, f"{name}_count", model="regressor"))
        assert total(samples, f"{name}_sum", model="regressor") >= 0


@pytest.mark.e2e
def test_each_process_of_concurrency_serves_its_own_port(
    redis_server: RedisServer, worker_env: dict[str, str]
) -> None:
    base = free_ports(2)
    env = {
        **worker_env,
        "INFERQ_REGRESSION_QUEUE": "test-metrics-concurrency",
        "INFERQ_METRICS_PORT": str(base),
    }
    with WorkerProcess(redis_server.url, env=env, args=["--concurrency", "2"]) as proc:
        # The ready file comes from whichever child is first: wait for both start lines.
        deadline = time.monotonic() + 120
        while len(ports := set(re.findall(r"metrics_port=(\d+)", proc.log_tail(100_000)))) < 2:
            assert time.monotonic() < deadline, proc.log_tail()
            time.sleep(0.1)  # polling a log file the children write; deadline-bounded
        assert ports == {str(base), str(base + 1)}
        settings = Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})
        with Client(settings) as client:
            handles = [client.submit(rows) for rows in [_rows(2, seed=i) for i in range(30)]]
            assert all(len(h.wait(60).earnings_usd) == 2 for h in handles)
        per_process = [scrape(base), scrape(base + 1)]
    # Prometheus sums the processes' series; so does this test.
    assert sum(total(s, "inferq_jobs_total", outcome="ok") for s in per_process) == 30
    assert sum(total(s, "inferq_batch_rows_sum") for s in per_process) == 60
    assert all(total(s, "inferq_model_info") == 1 for s in per_process)


@pytest.mark.e2e
def test_a_taken_metrics_port_stops_the_worker_with_one_line(
    redis_server: RedisServer, worker_env: dict[str, str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **worker_env,
            "INFERQ_REGRESSION_QUEUE": "test-metrics-taken",
            "INFERQ_METRICS_PORT": str(port),
            "INFERQ_METRICS_HOST": "127.0.0.1",
        }
        proc = WorkerProcess(redis_server.url, env=env)
        try:
            with pytest.raises(WorkerStartError, match=r"exited 2") as raised:
                proc.start(timeout_s=60)
        finally:
            proc.close()
    assert f"cannot serve metrics on 127.0.0.1:{port}" in str(raised.value)
