"""Lone stream jobs' latency, on an idle worker or while a bulk run goes.

A lone job is one `predict_earnings` job of one row, sent when the one before it was
answered (and a short pause), so it never shares a batch with another stream job:
its latency is what a single interactive caller sees. Sent while `inferq score`
runs on the same worker, it shows whether stream jobs go ahead of chunk rows
(worker.engine.batching) or queue behind them.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from itertools import cycle
from pathlib import Path
from typing import Any

import numpy as np
from celery import Celery

from inferq.core.constants import PREDICT_TASK
from producer.bulk.sinks import ResumableSink

PAUSE_S = 0.01  # between lone jobs: each one alone, and the client's CPU kept small


def lone_job_ms(app: Celery, queue: str, kwargs: dict[str, Any], timeout_s: float = 30.0) -> float:
    """One job sent and waited for: milliseconds from send to its answer in hand."""
    started = time.perf_counter()
    app.send_task(PREDICT_TASK, kwargs=kwargs, queue=queue).get(timeout=timeout_s)
    return (time.perf_counter() - started) * 1000


def lone_jobs(
    app: Celery,
    queue: str,
    payloads: list[dict[str, Any]],
    keep_going: Callable[[], bool],
    counts: Callable[[], bool] = lambda: True,
) -> list[float]:
    """Lone jobs one after another while ``keep_going()``; the latencies (ms) of those
    sent while ``counts()`` held and answered before ``keep_going()`` stopped."""
    samples = []
    jobs: Iterator[dict[str, Any]] = cycle(payloads)
    while keep_going():
        counted = counts()
        latency_ms = lone_job_ms(app, queue, next(jobs))
        if counted and keep_going():
            samples.append(latency_ms)
        time.sleep(PAUSE_S)  # a pause between lone jobs is the point, not a wait for state
    return samples


def idle(app: Celery, queue: str, payloads: list[dict[str, Any]], count: int) -> dict[str, Any]:
    """``count`` lone jobs on an idle worker."""
    samples = []
    for kwargs in (payloads * (count // max(len(payloads), 1) + 1))[:count]:
        samples.append(lone_job_ms(app, queue, kwargs))
        time.sleep(PAUSE_S)  # a pause between lone jobs is the point, not a wait for state
    return summary(samples)


def during(
    app: Celery,
    queue: str,
    payloads: list[dict[str, Any]],
    run: subprocess.Popen[bytes],
    output: Path,
) -> dict[str, Any]:
    """Lone jobs for as long as the bulk run ``run`` (a started `inferq score` into
    ``output``) goes; counted from its first scored chunk to its last (its part files:
    the start-up before the first chunk is not a bulk run yet)."""
    parts = ResumableSink.dir_of(output)

    def scoring() -> bool:
        return next(parts.glob("*.part"), None) is not None

    return summary(lone_jobs(app, queue, payloads, lambda: run.poll() is None, scoring))


def summary(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"jobs": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    p50, p95 = np.percentile(samples, [50, 95])
    return {
        "jobs": len(samples),
        "p50_ms": round(float(p50), 2),
        "p95_ms": round(float(p95), 2),
        "max_ms": round(max(samples), 2),
    }
