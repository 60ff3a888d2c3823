"""`inferq bench stream`: single-row jobs through one batching worker, and its anchors.

In one run, against one Redis, with one client (a plain Celery app, or inferq's
``Client`` for inferq's own jobs): (a) N `predict_earnings` jobs through an inferq
worker with the shipped defaults; (b) the same N jobs to a Celery no-op task on that
worker; the anchors, both plain Celery apps in the solo pool
(inferq.bench.batches_app), sent by the plain Celery client: (d) celery-batches, the
batching a Celery user writes, and (e) a no-op; then (c) the course's way,
`model.predict` once per job in a solo worker, and the latency of lone jobs on an
idle worker. (a), (b), (d) and (e) alternate over rounds; each reports its median
round, with the worker's CPU per job (its process tree, from /proc) and the client's.
Queues are private to the run.
"""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack
from typing import Any

import numpy as np
from celery import Celery

from inferq.bench.anchors import (
    ANCHOR_APP,
    BATCHES_PREDICT_TASK,
    POOL,
    anchor_settings,
    missing_celery_batches,
)
from inferq.bench.measure import celery_phase, inferq_phase
from inferq.bench.phases import (
    BENCH_INCLUDE,
    BENCH_NOOP_TASK,
    BENCH_SEED_TASK,
    bench_app,
    log,
    median_round,
    run_phase,
)
from inferq.bench.settings_record import worker_settings
from inferq.core.constants import COURSE_TARGET, PREDICT_TASK
from inferq.core.settings import Settings
from inferq.ops.redis_server import redis_url_or_own
from inferq.ops.worker_command import celery_command
from inferq.ops.worker_process import WorkerProcess
from inferq.tools.sample_data import generate
from producer.client import Client

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


# The alternating phases: (a) inferq, (b) a no-op on inferq's worker, (d) celery-batches,
# (e) a no-op in the solo pool; each name is its JSON keys' prefix ("" for inferq).
PHASES = ("", "noop_", "celery_batches_", "noop_solo_")


class _Run:
    """One run's workers and clients: what each phase sends, to which queue, and whose
    CPU it counts."""

    def __init__(self, app: Celery, client: Client | None, queues: dict[str, str]) -> None:
        self.app, self.client, self.queues = app, client, queues
        self.pids: dict[str, int] = {}

    def phase(self, name: str, payloads: list[dict[str, Any]]) -> dict[str, Any]:
        pid, queue = self.pids[name], self.queues[name]
        if name == "" and self.client is not None:
            return inferq_phase(self.client, payloads, pid)
        task = {"": PREDICT_TASK, "celery_batches_": BATCHES_PREDICT_TASK}.get(
            name, BENCH_NOOP_TASK
        )
        return celery_phase(self.app, task, queue, payloads, pid)

    def alternate(
        self, payloads: list[dict[str, Any]], rounds: int
    ) -> dict[str, list[dict[str, Any]]]:
        """Every phase once a round, so a burst of load elsewhere on the machine does not
        decide a ratio; each phase then reports its median round."""
        seen: dict[str, list[dict[str, Any]]] = {name: [] for name in PHASES}
        for i in range(1, rounds + 1):
            log(f"round {i}/{rounds}: {len(payloads)} jobs each to inferq, its no-op, "
                "celery-batches and the solo no-op")  # fmt: skip
            for name in PHASES:
                seen[name].append(self.phase(name, payloads))
        return seen


def _anchor_argv(queue: str, node: str) -> list[str]:
    return celery_command([queue], node, "WARNING", "-P", POOL, app=ANCHOR_APP)


def _keys(name: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    best = _median_round(rounds)
    keys = ("jobs_per_s", "worker_cpu_ms_per_job", "client_cpu_ms_per_job", "p50_ms")
    return {
        **{f"{name}{k}": best[k] for k in keys},
        f"{name}jobs_per_s_rounds": best["rounds"],
    }


def _start(
    stack: ExitStack, url: str, env: dict[str, str], queues: dict[str, str], tag: str
) -> dict[str, int]:
    """Every worker of the run, started; the pid whose process tree each phase counts."""

    def start(argv: list[str], worker_env: dict[str, str]) -> int:
        return stack.enter_context(WorkerProcess(url, env=worker_env, argv=argv)).pid

    main_env = {**env, "INFERQ_REGRESSION_QUEUE": queues[""]}
    main = start(_worker_argv(queues[""], f"main-{tag}@%h"), main_env)
    # The course's way: one job at a time in a solo worker, model.predict per job.
    start(_worker_argv(queues["seed"], f"seed-{tag}@%h", "-P", "solo"), env)
    batches = start(_anchor_argv(queues["celery_batches_"], f"batches-{tag}@%h"), env)
    noop = start(_anchor_argv(queues["noop_solo_"], f"noop-{tag}@%h"), env)
    return {"": main, "noop_": main, "celery_batches_": batches, "noop_solo_": noop}


def run_stream_bench(
    settings: Settings, *, jobs: int, seed_jobs: int, rounds: int = 3, client: str = "celery"
) -> dict[str, Any]:
    missing = missing_celery_batches()
    if missing is not None:
        raise RuntimeError(missing)
    tag = uuid.uuid4().hex[:8]
    queues = {name: f"bench-{tag}-{name or 'main_'}q" for name in (*PHASES, "seed")}
    queues["noop_"] = queues[""]  # (b) runs on inferq's worker
    payloads = predict_payloads(max(jobs, seed_jobs, WARMUP_JOBS, IDLE_JOBS))
    env = {"INFERQ_REGRESSOR_PATH": str(settings.regressor_path.resolve())}
    with redis_url_or_own(settings.redis_url) as url, ExitStack() as stack:
        app = bench_app(settings, url)
        stack.callback(app.close)
        run = _Run(app, None, queues)
        run.pids = _start(stack, url, env, queues, tag)
        if client == "inferq":
            own = settings.model_copy(update={"redis_url": url, "regression_queue": queues[""]})
            run.client = stack.enter_context(Client(own))
        log(f"workers ready (inferq worker pid {run.pids['']}, client {client}); warming up")
        for name in PHASES:
            run.phase(name, payloads[:WARMUP_JOBS])
        run_phase(app, BENCH_SEED_TASK, queues["seed"], payloads[:10])
        seen = run.alternate(payloads[:jobs], rounds)
        log(f"(c) {seed_jobs} seed-style jobs (model.predict per job)")
        seed = run_phase(app, BENCH_SEED_TASK, queues["seed"], payloads[:seed_jobs])
        log(f"idle latency over {IDLE_JOBS} lone jobs")
        idle_p50 = idle_latency(app, queues[""], payloads[:IDLE_JOBS])
    main_env = {**env, "INFERQ_REGRESSION_QUEUE": queues[""]}
    return _result(settings, main_env, jobs, client, seen, seed, idle_p50)


def _result(
    settings: Settings,
    main_env: dict[str, str],
    jobs: int,
    client: str,
    seen: dict[str, list[dict[str, Any]]],
    seed: dict[str, Any],
    idle_p50: float,
) -> dict[str, Any]:
    batched = _median_round(seen[""])
    figures: dict[str, Any] = {}
    for name in PHASES:
        figures.update(_keys(name, seen[name]))
    anchor = figures["celery_batches_worker_cpu_ms_per_job"]
    return {
        "jobs": jobs,
        "client": client,
        **figures,
        "ratio_to_celery_batches": round(
            figures["jobs_per_s"] / figures["celery_batches_jobs_per_s"], 3
        ),
        "worker_cpu_ratio_to_celery_batches": round(figures["worker_cpu_ms_per_job"] / anchor, 3)
        if anchor
        else None,
        "ratio_to_noop": round(figures["jobs_per_s"] / figures["noop_jobs_per_s"], 3),
        "seed_style_jobs_per_s": seed["jobs_per_s"],
        "mean_batch_rows": batched["mean_batch_rows"],
        "p99_ms": batched["p99_ms"],
        "seed_style_p50_ms": seed["p50_ms"],
        "idle_p50_ms": idle_p50,
        "max_wait_ms": settings.max_wait_ms,
        "max_batch_size": settings.max_batch_size,
        "settings": worker_settings(main_env),
        "anchor_settings": anchor_settings(),
        "failed": sum(r["failed"] for rounds in seen.values() for r in rounds) + seed["failed"],
        "redis": "INFERQ_REDIS_URL" if settings.redis_url else "own redis-server",
    }
