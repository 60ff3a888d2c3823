"""`inferq bench scale`: stream jobs/s and bulk rows/s with one worker process and with two.

Each side (stream, then bulk) starts two worker processes on one Redis: the threads-pool
Celery worker that `inferq worker` runs, each with its own node name and its own copy
of the model. There are two private queues: the first process consumes both, the second
only the shared one. Jobs sent to the solo queue are served by one process, jobs sent
to the shared queue by both. So 1-worker and 2-worker rounds alternate on the same warm
processes: a burst of load elsewhere on the machine hits both sides of the ratio, and
TensorFlow is not restarted in between. (During a 1-worker round the second process is
idle: it waits on the shared queue and sends heartbeats.)

Where the time goes: over each round, the CPU seconds of each worker process, of the
client (this process on the stream side; the `inferq score` child on the bulk side,
less its start-up) and of redis-server (from its own INFO, so a remote Redis reports
too), divided by the jobs or rows of the round.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import redis
from celery import Celery

from inferq.bench.bulk import run_score, write_products
from inferq.bench.phases import bench_app, cpu_seconds, log, median_round, run_phase
from inferq.bench.stream import WARMUP_JOBS, predict_payloads
from inferq.core.constants import PREDICT_TASK
from inferq.core.settings import Settings
from inferq.ops.redis_server import redis_url_or_own
from inferq.ops.worker_command import celery_command
from inferq.ops.worker_process import WorkerProcess

# A few small chunks: warms both bulk workers and measures the client's start-up CPU,
# which is then taken off each bulk round's client CPU.
WARM_ROWS, WARM_CHUNK_ROWS = 200, 50

Round = dict[str, Any]
Rounds = dict[int, list[Round]]  # worker processes -> that count's rounds, in order


@dataclass(frozen=True)
class BulkSizes:
    rows: int
    chunk_rows: int = 16_384
    in_flight: int = 4
    max_batch: int = 8192

    def flags(self) -> tuple[str, ...]:
        return ("--chunk-rows", str(self.chunk_rows), "--in-flight", str(self.in_flight))


@dataclass(frozen=True)
class Pair:
    """Two running worker processes: `solo_queue` served by the first, `shared_queue` by both."""

    solo_queue: str
    shared_queue: str
    pids: tuple[int, ...]

    def queue_for(self, workers: int) -> str:
        return self.solo_queue if workers == 1 else self.shared_queue


@contextmanager
def worker_pair(url: str, side: str, env: dict[str, str]) -> Iterator[Pair]:
    """Start the two worker processes of one side; stop both (warm shutdown) on exit."""
    tag = uuid.uuid4().hex[:8]
    solo, shared = f"bench-{tag}-{side}-solo", f"bench-{tag}-{side}-shared"
    # A worker loads the regressor when it consumes the configured regression queue.
    env = {**env, "INFERQ_REGRESSION_QUEUE": shared}
    with ExitStack() as stack:
        pids = []
        for index, queues in enumerate(([solo, shared], [shared]), start=1):
            node = f"scale-{side}-{index}-{tag}@%h"
            argv = celery_command(queues, node, "WARNING")
            pids.append(stack.enter_context(WorkerProcess(url, env=env, argv=argv)).pid)
        log(f"{side}: worker processes ready (pids {pids[0]}, {pids[1]})")
        yield Pair(solo, shared, tuple(pids))


@dataclass(frozen=True)
class CpuMark:
    """CPU seconds used so far by each worker process and by redis-server."""

    workers: tuple[float | None, ...]
    redis: float | None


def redis_cpu_s(client: redis.Redis) -> float | None:
    try:
        # redis-py types its sync and asyncio clients as one: this one returns a dict.
        info = cast("dict[str, Any]", client.info("cpu"))
    except redis.RedisError:
        return None  # e.g. an ACL user without INFO: the figure is left out, not faked
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def cpu_mark(pids: Sequence[int], client: redis.Redis) -> CpuMark:
    return CpuMark(tuple(cpu_seconds(pid) for pid in pids), redis_cpu_s(client))


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def _per(seconds: float | None, units: int, scale: float) -> float | None:
    return None if seconds is None else round(seconds / units * scale, 3)


def breakdown(
    before: CpuMark, after: CpuMark, client_s: float, units: int, scale: float, elapsed_s: float
) -> dict[str, Any]:
    """CPU per unit (job or row; `scale` turns seconds into ms or µs) of each party, and
    how many cores the round kept busy in all (the machine's cores are the ceiling)."""
    each = [_delta(b, a) for b, a in zip(before.workers, after.workers, strict=True)]
    workers = None if any(s is None for s in each) else sum(s or 0.0 for s in each)
    parts = {"workers": workers, "client": client_s, "redis": _delta(before.redis, after.redis)}
    known = sum(s for s in parts.values() if s is not None)
    return {
        **{name: _per(s, units, scale) for name, s in parts.items()},
        "per_worker": [_per(s, units, scale) for s in each],
        "total": _per(known, units, scale),
        "cores_busy": round(known / elapsed_s, 2) if elapsed_s > 0 else None,
    }


def alternate(rounds: int, side: str, measure: Callable[[int], Round]) -> Rounds:
    """1- and 2-worker rounds alternate, the order flipped each round (1,2 then 2,1), so
    neither count always runs first, right after the other has warmed caches."""
    out: Rounds = {1: [], 2: []}
    for i in range(rounds):
        for workers in (1, 2) if i % 2 == 0 else (2, 1):
            log(f"{side} round {i + 1}/{rounds}: {workers} worker process(es)")
            out[workers].append(measure(workers))
    return out


def stream_round(
    app: Celery, queue: str, payloads: list[dict[str, Any]], pids: Sequence[int], rds: redis.Redis
) -> Round:
    """The stream bench's phase (a): N one-row jobs from this one client, then all results."""
    before, client0, start = cpu_mark(pids, rds), time.process_time(), time.perf_counter()
    phase = run_phase(app, PREDICT_TASK, queue, payloads)
    elapsed_s, client_s = time.perf_counter() - start, time.process_time() - client0
    cpu = breakdown(before, cpu_mark(pids, rds), client_s, len(payloads), 1000, elapsed_s)
    return {
        "rate": phase["jobs_per_s"],
        "failed": phase["failed"],
        "mean_batch_rows": phase["mean_batch_rows"],
        "cpu": cpu,
    }


def stream_side(settings: Settings, url: str, rds: redis.Redis, jobs: int, rounds: int) -> Rounds:
    payloads = predict_payloads(max(jobs, WARMUP_JOBS))
    env = {"INFERQ_REGRESSOR_PATH": str(settings.regressor_path.resolve())}
    app = bench_app(settings, url)
    try:
        with worker_pair(url, "stream", env) as pair:
            for workers in (1, 2):  # the shared queue's warm-up reaches both processes
                run_phase(app, PREDICT_TASK, pair.queue_for(workers), payloads[:WARMUP_JOBS])

            def measure(workers: int) -> Round:
                queue = pair.queue_for(workers)
                return stream_round(app, queue, payloads[:jobs], pair.pids, rds)

            return alternate(rounds, "stream", measure)
    finally:
        app.close()


def bulk_round(
    source: Path,
    env: dict[str, str],
    sizes: BulkSizes,
    pair: Pair,
    rds: redis.Redis,
    startup_cpu_s: float,
) -> Round:
    """`inferq score` of the whole file (CSV in, CSV out) through the queue `env` names."""
    output = source.with_name(f"scored-{uuid.uuid4().hex[:6]}.csv")
    before = cpu_mark(pair.pids, rds)
    summary = run_score(source, output, env, *sizes.flags())
    after = cpu_mark(pair.pids, rds)
    output.unlink(missing_ok=True)  # 20+ MB a round; only the summary is kept
    client_s = max(summary["cpu_s"] - startup_cpu_s, 0.0)
    # The rate and cores_busy use the scoring time the client reports, start-up excluded.
    cpu = breakdown(before, after, client_s, summary["rows"], 1e6, summary["seconds"])
    return {
        "rate": round(summary["rows_per_s"]),
        "failed": summary["failed"],
        "rows_scored": summary["rows"],
        "cpu": cpu,
    }


def bulk_side(
    settings: Settings, url: str, rds: redis.Redis, sizes: BulkSizes, rounds: int
) -> tuple[Rounds, float]:
    """The bulk rounds, and the client's start-up CPU seconds (taken off each round)."""
    env = {
        **os.environ,
        "INFERQ_REDIS_URL": url,
        "INFERQ_REGRESSOR_PATH": str(settings.regressor_path.resolve()),
        "INFERQ_MAX_BATCH_SIZE": str(sizes.max_batch),  # as `inferq bench bulk` runs them
    }
    with tempfile.TemporaryDirectory(prefix="inferq-bench-scale-") as tmp:
        work, warm_dir = Path(tmp), Path(tmp) / "warm"
        warm_dir.mkdir()
        log(f"writing {sizes.rows} products as CSV")
        source, _ = write_products(work, sizes.rows)
        warm, _ = write_products(warm_dir, WARM_ROWS)
        with worker_pair(url, "bulk", env) as pair:

            def client_env(workers: int) -> dict[str, str]:
                return {**env, "INFERQ_REGRESSION_QUEUE": pair.queue_for(workers)}

            warm_flags = ("--chunk-rows", str(WARM_CHUNK_ROWS), "--in-flight", "2")
            warm_run = run_score(warm, warm_dir / "out.csv", client_env(2), *warm_flags)
            startup_cpu_s = float(warm_run["cpu_s"])

            def measure(workers: int) -> Round:
                return bulk_round(source, client_env(workers), sizes, pair, rds, startup_cpu_s)

            return alternate(rounds, "bulk", measure), startup_cpu_s


def side_report(name: str, rounds: Rounds, cpu_key: str) -> dict[str, Any]:
    one, two = median_round(rounds[1], "rate"), median_round(rounds[2], "rate")
    return {
        f"{name}_1": one["rate"],
        f"{name}_2": two["rate"],
        f"{name}_ratio": round(two["rate"] / one["rate"], 3),
        f"{name}_1_rounds": [r["rate"] for r in rounds[1]],
        f"{name}_2_rounds": [r["rate"] for r in rounds[2]],
        cpu_key: {f"{name}_1": one["cpu"], f"{name}_2": two["cpu"]},
    }


def _failed(*sides: Rounds) -> int:
    return sum(r["failed"] for side in sides for rounds in side.values() for r in rounds)


def run_scale_bench(
    settings: Settings, *, jobs: int, bulk: BulkSizes, rounds: int = 3
) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    with redis_url_or_own(settings.redis_url) as url:
        rds = redis.Redis.from_url(url)
        try:
            stream = stream_side(settings, url, rds, jobs, rounds)
            bulk_rounds, startup_cpu_s = bulk_side(settings, url, rds, bulk, rounds)
        finally:
            rds.close()
    bulk_settings = settings.model_copy(update={"max_batch_size": bulk.max_batch})
    return {
        **side_report("stream", stream, "cpu_ms_per_job"),
        **side_report("bulk", bulk_rounds, "cpu_us_per_row"),
        "stream_mean_batch_rows": [
            median_round(stream[n], "rate")["mean_batch_rows"] for n in (1, 2)
        ],
        "bulk_client_startup_cpu_s": startup_cpu_s,
        "bulk_rows_scored": min(r["rows_scored"] for rs in bulk_rounds.values() for r in rs),
        "failed": _failed(stream, bulk_rounds),
        "sizes": {
            "jobs": jobs,
            "rows": bulk.rows,
            "rounds": rounds,
            "chunk_rows": bulk.chunk_rows,
            "in_flight": bulk.in_flight,
            "stream_max_batch_size": settings.max_batch_size,
            "stream_max_wait_ms": settings.max_wait_ms,
            "stream_job_slots": settings.effective_job_slots,
            "bulk_max_batch_size": bulk.max_batch,
            "bulk_job_slots": bulk_settings.effective_job_slots,
        },
        "machine": {
            "cpu_cores": os.cpu_count(),
            "load_avg_1m_before": round(load_before, 2),
            "load_avg_1m_after": round(os.getloadavg()[0], 2),
        },
        "redis": "INFERQ_REDIS_URL" if settings.redis_url else "own redis-server",
    }
