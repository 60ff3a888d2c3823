"""`inferq bench stream`: single-row jobs through one batching worker.

In one run, against one Redis: (a) N `predict_earnings` jobs from one client;
(b) the same N jobs to a Celery no-op task on the same worker (the per-message
ceiling); (c) the course's way, `model.predict` once per job in a solo worker;
and the latency of lone jobs on an idle worker. Queues are private to the run.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
from celery import Celery

from inferq.bench.phases import (
    BENCH_INCLUDE,
    BENCH_NOOP_TASK,
    BENCH_SEED_TASK,
    bench_app,
    log,
    median_round,
    run_phase,
)
from inferq.core.constants import COURSE_TARGET, PREDICT_TASK
from inferq.core.settings import Settings
from inferq.ops.redis_server import redis_url_or_own
from inferq.ops.worker_command import celery_command
from inferq.ops.worker_process import WorkerProcess
from inferq.tools.sample_data import generate

WARMUP_JOBS = 100
IDLE_JOBS = 50


def predict_payloads(n: int) -> list[dict[str, Any]]:
    """N one-row predict_earnings job arguments (generated games, seed 7)."""
    cols = generate(n, seed=7)
    cols.pop(COURSE_TARGET)
    return [{"rows": {k: float(v[i]) for k, v in cols.items()}} for i in range(n)]


def idle_latency(app: Celery, queue: str, payloads: list[dict[str, Any]]) -> float:
    """p50 of lone jobs sent one after another to an idle worker."""
    samples = []
    for kwargs in payloads:
        t = time.perf_counter()
        app.send_task(PREDICT_TASK, kwargs=kwargs, queue=queue).get(timeout=30)
        samples.append((time.perf_counter() - t) * 1000)
    return round(float(np.percentile(samples, 50)), 2)


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {**median_round(rounds, "jobs_per_s"), "rounds": [r["jobs_per_s"] for r in rounds]}


def _worker_argv(queue: str, node: str, *extra: str) -> list[str]:
    return celery_command([queue], node, "WARNING", *BENCH_INCLUDE, *extra)


def _alternate(
    app: Celery, queue: str, payloads: list[dict[str, Any]], rounds: int, pid: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(a) and (b) alternate over several rounds, so a burst of load elsewhere on the
    machine does not decide the ratio; each side then reports its median round."""
    batched, noop = [], []
    for i in range(1, rounds + 1):
        log(f"round {i}/{rounds}: (a) {len(payloads)} predict_earnings jobs, (b) as many no-ops")
        batched.append(run_phase(app, PREDICT_TASK, queue, payloads, pid))
        noop.append(run_phase(app, BENCH_NOOP_TASK, queue, payloads, pid))
    return batched, noop


def run_stream_bench(
    settings: Settings, *, jobs: int, seed_jobs: int, rounds: int = 3
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    main_q, seed_q = f"bench-{tag}-regression", f"bench-{tag}-seed"
    payloads = predict_payloads(max(jobs, seed_jobs, WARMUP_JOBS, IDLE_JOBS))
    env = {"INFERQ_REGRESSOR_PATH": str(settings.regressor_path.resolve())}
    main_env = {**env, "INFERQ_REGRESSION_QUEUE": main_q}
    with redis_url_or_own(settings.redis_url) as url:
        app = bench_app(settings, url)
        with (
            WorkerProcess(url, env=main_env, argv=_worker_argv(main_q, f"main-{tag}@%h")) as worker,
            # The course's way: one job at a time in a solo worker, model.predict per job.
            WorkerProcess(url, env=env, argv=_worker_argv(seed_q, f"seed-{tag}@%h", "-P", "solo")),
        ):
            log(f"workers ready (batching worker pid {worker.pid}); warming up")
            run_phase(app, PREDICT_TASK, main_q, payloads[:WARMUP_JOBS])
            run_phase(app, BENCH_NOOP_TASK, main_q, payloads[:WARMUP_JOBS])
            run_phase(app, BENCH_SEED_TASK, seed_q, payloads[:10])
            batched_rounds, noop_rounds = _alternate(
                app, main_q, payloads[:jobs], rounds, worker.pid
            )
            log(f"(c) {seed_jobs} seed-style jobs (model.predict per job)")
            seed = run_phase(app, BENCH_SEED_TASK, seed_q, payloads[:seed_jobs])
            log(f"idle latency over {IDLE_JOBS} lone jobs")
            idle_p50 = idle_latency(app, main_q, payloads[:IDLE_JOBS])
        app.close()
    batched, noop = _median_round(batched_rounds), _median_round(noop_rounds)
    return {
        "jobs": jobs,
        "jobs_per_s": batched["jobs_per_s"],
        "noop_jobs_per_s": noop["jobs_per_s"],
        "seed_style_jobs_per_s": seed["jobs_per_s"],
        "ratio_to_noop": round(batched["jobs_per_s"] / noop["jobs_per_s"], 3),
        "jobs_per_s_rounds": batched["rounds"],
        "noop_jobs_per_s_rounds": noop["rounds"],
        "mean_batch_rows": batched["mean_batch_rows"],
        "worker_cpu_ms_per_job": batched["worker_cpu_ms_per_job"],
        "noop_worker_cpu_ms_per_job": noop["worker_cpu_ms_per_job"],
        "p50_ms": batched["p50_ms"],
        "p99_ms": batched["p99_ms"],
        "noop_p50_ms": noop["p50_ms"],
        "seed_style_p50_ms": seed["p50_ms"],
        "idle_p50_ms": idle_p50,
        "max_wait_ms": settings.max_wait_ms,
        "max_batch_size": settings.max_batch_size,
        "failed": sum(r["failed"] for r in [*batched_rounds, *noop_rounds, seed]),
        "redis": "INFERQ_REDIS_URL" if settings.redis_url else "own redis-server",
    }
