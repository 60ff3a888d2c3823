"""What every benchmark shares: a private Celery client, timed phases, log lines."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from celery import Celery
from celery.result import AsyncResult, ResultSet

from inferq.core.celery_config import celery_config
from inferq.core.settings import Settings

# The benchmarks' own tasks (inferq.bench.tasks), loaded by their workers only.
BENCH_NOOP_TASK = "inferq.bench.noop"
BENCH_SEED_TASK = "inferq.bench.seed_predict"
BENCH_INCLUDE = ("--include", "inferq.bench.tasks")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bench_app(settings: Settings, redis_url: str) -> Celery:
    app = Celery("inferq-bench", set_as_current=False)
    app.conf.update(celery_config(settings.model_copy(update={"redis_url": redis_url})))
    return app


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU of a process so far (Linux /proc), or None where unreadable."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send_all(
    app: Celery, task: str, queue: str, payloads: list[dict[str, Any]]
) -> tuple[list[AsyncResult], dict[str, float]]:
    """Send every job at once; their results and when each was sent."""
    sent: dict[str, float] = {}
    results = []
    for kwargs in payloads:
        r = app.send_task(task, kwargs=kwargs, queue=queue, argsrepr="()", kwargsrepr="{}")
        sent[r.id] = time.perf_counter()
        results.append(r)
    return results, sent


def collect(
    app: Celery, results: list[AsyncResult], sent: dict[str, float]
) -> tuple[list[float], list[int], int]:
    """Every result as it lands: latencies (ms), rows of the batch each job shared, failures."""
    latencies, batch_rows, failed = [], [], 0
    for task_id, meta in ResultSet(results, app=app).iter_native(timeout=600):
        latencies.append((time.perf_counter() - sent[task_id]) * 1000)
        failed += meta["status"] != "SUCCESS"
        if isinstance(meta["result"], dict) and "batch" in meta["result"]:
            batch_rows.append(meta["result"]["batch"]["rows"])
    return latencies, batch_rows, failed


def run_phase(
    app: Celery,
    task: str,
    queue: str,
    payloads: list[dict[str, Any]],
    worker_pid: int | None = None,
) -> dict[str, Any]:
    """Send every job, then collect results as they land; jobs/s, latency percentiles and
    (given its pid) the worker's CPU per job: where the time goes."""
    cpu_before = cpu_seconds(worker_pid)
    start = time.perf_counter()
    latencies, batch_rows, failed = collect(app, *send_all(app, task, queue, payloads))
    elapsed = time.perf_counter() - start
    cpu_after = cpu_seconds(worker_pid)
    cpu_ms = None
    if cpu_before is not None and cpu_after is not None:
        cpu_ms = round((cpu_after - cpu_before) / len(payloads) * 1000, 2)
    return {
        "worker_cpu_ms_per_job": cpu_ms,
        "jobs_per_s": round(len(payloads) / elapsed, 1),
        "mean_batch_rows": round(float(np.mean(batch_rows)), 1) if batch_rows else 1.0,
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "failed": failed,
    }


def median_round(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The round with the median ``key`` (the upper one of an even count)."""
    return sorted(rounds, key=lambda r: r[key])[len(rounds) // 2]
