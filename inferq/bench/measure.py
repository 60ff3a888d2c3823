"""One timed phase of `inferq bench stream`, with where its CPU went: the worker's
process tree (from /proc) and the client (this process), per job.

The same client sends every phase of a run: a plain Celery app (``send_task`` for
every job, then every result as it lands), or inferq's own ``Client`` (``submit``,
then ``as_completed``). The worker's CPU is summed over its process and every
descendant, so a prefork pool's children count too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from celery import Celery

from inferq.bench.phases import collect, cpu_seconds, send_all
from inferq.errors import InferqError
from producer.client import Client


def descendants(pid: int) -> list[int]:
    """The pids of ``pid``'s children, their children, and so on (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a process that ended while we looked
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants so far."""
    return sum(cpu_seconds(p) or 0.0 for p in [pid, *descendants(pid)])


def _summary(
    jobs: int, elapsed_s: float, latencies_ms: list[float], batch_rows: list[int], failed: int
) -> dict[str, Any]:
    return {
        "jobs_per_s": round(jobs / elapsed_s, 1),
        "mean_batch_rows": round(float(np.mean(batch_rows)), 1) if batch_rows else 1.0,
        "p50_ms": round(float(np.percentile(latencies_ms, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies_ms, 99)), 2),
        "failed": failed,
    }


def measured(run: Callable[[], dict[str, Any]], jobs: int, worker_pid: int) -> dict[str, Any]:
    """``run()``'s summary with the worker's and the client's CPU per job, in ms."""
    worker0, client0 = tree_cpu_s(worker_pid), time.process_time()
    summary = run()
    worker1, client1 = tree_cpu_s(worker_pid), time.process_time()
    return {
        **summary,
        "worker_cpu_ms_per_job": round((worker1 - worker0) / jobs * 1000, 3),
        "client_cpu_ms_per_job": round((client1 - client0) / jobs * 1000, 3),
    }


def celery_phase(
    app: Celery, task: str, queue: str, payloads: list[dict[str, Any]], worker_pid: int
) -> dict[str, Any]:
    """Every job sent with a plain Celery client, then every result as it lands."""

    def run() -> dict[str, Any]:
        start = time.perf_counter()
        latencies, batch_rows, failed = collect(app, *send_all(app, task, queue, payloads))
        return _summary(len(payloads), time.perf_counter() - start, latencies, batch_rows, failed)

    return measured(run, len(payloads), worker_pid)


def inferq_phase(client: Client, payloads: list[dict[str, Any]], worker_pid: int) -> dict[str, Any]:
    """Every job submitted with inferq's Client, then every answer as it lands."""

    def run() -> dict[str, Any]:
        start = time.perf_counter()
        handles = [client.submit(kwargs["rows"]) for kwargs in payloads]
        latencies, batch_rows, failed = [], [], 0
        for handle, answer in client.as_completed(handles, timeout_s=600):
            latencies.append((time.monotonic() - handle.sent_at) * 1000)
            if isinstance(answer, InferqError):
                failed += 1
            else:
                batch_rows.append(answer.batch.rows)
        return _summary(len(payloads), time.perf_counter() - start, latencies, batch_rows, failed)

    return measured(run, len(payloads), worker_pid)
