"""What every benchmark shares: a private Celery client, timed phases, log lines."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from celery import Celery
from celery.result import ResultSet

from inferq.celery_config import celery_config
from inferq.settings import Settings


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def bench_app(settings: Settings, redis_url: str) -> Celery:
    app = Celery("inferq-bench", set_as_current=False)
    app.conf.update(celery_config(settings.model_copy(update={"redis_url": redis_url})))
    return app


def run_phase(
    app: Celery, task: str, queue: str, payloads: list[dict[str, Any]]
) -> dict[str, float]:
    """Send every job, then collect results as they land; jobs/s and latency percentiles."""
    sent: dict[str, float] = {}
    results = []
    start = time.perf_counter()
    for kwargs in payloads:
        r = app.send_task(task, kwargs=kwargs, queue=queue, argsrepr="()", kwargsrepr="{}")
        sent[r.id] = time.perf_counter()
        results.append(r)
    latencies, batch_rows, failed = [], [], 0
    for task_id, meta in ResultSet(results, app=app).iter_native(timeout=600):
        latencies.append((time.perf_counter() - sent[task_id]) * 1000)
        failed += meta["status"] != "SUCCESS"
        if isinstance(meta["result"], dict) and "batch" in meta["result"]:
            batch_rows.append(meta["result"]["batch"]["rows"])
    elapsed = time.perf_counter() - start
    return {
        "jobs_per_s": round(len(payloads) / elapsed, 1),
        "mean_batch_rows": round(float(np.mean(batch_rows)), 1) if batch_rows else 1.0,
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "failed": failed,
    }
