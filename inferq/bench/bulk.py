"""`inferq bench bulk`: a large products file scored through Redis vs in process.

In one run: generate an N-row products CSV (and the same rows as Parquet);
(a) score it with `inferq score` through one worker, CSV in and CSV out, and
right after it (b) the same file with `inferq score --in-process`: one Python
process that reads, runs the same model file with one XLA-compiled function on
large batches, and writes the same output; then the same pair for Parquet to
Parquet. During (b) the worker is stopped (SIGSTOP, SIGCONT after), so the two do
not share the CPU, and each ratio compares two runs seconds apart: on a machine
shared with other work, a ratio of runs half a minute apart measured the load's
swings as much as the code (1.1 and 1.8 were seen). Both are separate processes,
so their peak memory is theirs alone; the rate is the scoring time each reports,
start-up excluded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import redis
from celery import Celery

from inferq.bench import lone_jobs
from inferq.bench.bulk_report import COMPOSE_SERVICE, compose_line, figures
from inferq.bench.phases import bench_app, cpu_seconds, log
from inferq.bench.scale_sampler import redis_cpu_s
from inferq.bench.settings_record import compose_overrides, label, worker_settings
from inferq.bench.stream import predict_payloads
from inferq.core.constants import COURSE_TARGET
from inferq.core.settings import Settings
from inferq.ops.redis_server import redis_url_or_own
from inferq.ops.worker_process import WorkerProcess
from inferq.tools.sample_data import generate
from producer.bulk.score_file import DEFAULT_CHUNK_ROWS

LONE_JOBS = 40


def write_products(directory: Path, rows: int, seed: int = 11) -> tuple[Path, Path]:
    """The same N products (features only) as CSV and as Parquet."""
    cols = generate(rows, seed=seed)
    cols.pop(COURSE_TARGET)
    table = pa.table(cols)
    csv_path, parquet_path = directory / "products.csv", directory / "products.parquet"
    pacsv.write_csv(table, csv_path)
    pq.write_table(table, parquet_path)
    return csv_path, parquet_path


@dataclass(frozen=True)
class Scoring:
    """A started `inferq score` and where its summary will be."""

    proc: subprocess.Popen[bytes]
    summary_path: Path

    def summary(self) -> dict[str, Any]:
        """The summary once the run has ended (RuntimeError if it failed)."""
        if self.proc.wait() != 0:
            raise RuntimeError(f"inferq score exited {self.proc.returncode}")
        summary: dict[str, Any] = json.loads(self.summary_path.read_text())
        return summary


def peak_rss_mb(pid: int) -> float | None:
    """A live process's peak resident memory (VmHWM), from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def start_score(source: Path, output: Path, env: dict[str, str], *extra: str) -> Scoring:
    """`inferq score` started in a child process (its summary JSON beside the output)."""
    summary_path = output.with_name(output.name + ".summary.json")
    argv = [sys.executable, "-m", "inferq", "score", str(source), "-o", str(output)]
    proc = subprocess.Popen([*argv, "--summary-json", str(summary_path), *extra], env=env)
    return Scoring(proc, summary_path)


def run_score(source: Path, output: Path, env: dict[str, str], *extra: str) -> dict[str, Any]:
    """`inferq score` in a child process: its summary, plus its peak memory and CPU seconds
    (rusage: the whole child, start-up included)."""
    scoring = start_score(source, output, env, *extra)
    _, status, usage = os.wait4(scoring.proc.pid, 0)
    scoring.proc.returncode = os.waitstatus_to_exitcode(status)
    summary = scoring.summary()
    summary["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    # The whole child, start-up included (the summary's own cpu_s: the scoring only).
    summary["run_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
    return summary


def _max_diff(a: Path, b: Path) -> float:
    x = pacsv.read_csv(a).column("earnings_usd").to_numpy()
    y = pacsv.read_csv(b).column("earnings_usd").to_numpy()
    return float(np.max(np.abs(x - y))) if len(x) == len(y) else float("inf")


def run_bulk_bench(
    settings: Settings,
    *,
    rows: int,
    chunk_rows: int | None,
    in_flight: int,
    max_batch: int | None = None,
    bulk_batch: int | None = None,
    compose: bool = True,
) -> dict[str, Any]:
    """(a) through one worker with the shipped defaults (``max_batch``, ``bulk_batch``:
    overrides, then recorded), each format followed by (b) in process, lone jobs' latency
    beside it; (a2) again with docker-compose.yml's regression worker settings where
    they differ (its ratios against the same (b) runs). ``chunk_rows`` None: the size
    `inferq score` uses for a new run (its default, measured as shipped)."""
    model = str(settings.regressor_path.resolve())
    chunking = () if chunk_rows is None else ("--chunk-rows", str(chunk_rows))
    flags = (*chunking, "--in-flight", str(in_flight))
    base = {"INFERQ_REGRESSOR_PATH": model}
    tuned = {
        name: str(value)
        for name, value in (
            ("INFERQ_MAX_BATCH_SIZE", max_batch),
            ("INFERQ_BULK_BATCH_SIZE", bulk_batch),
        )
        if value
    }
    from_compose = compose_overrides(COMPOSE_SERVICE) if compose else None
    with tempfile.TemporaryDirectory(prefix="inferq-bench-bulk-") as tmp:
        work = Path(tmp)
        log(f"writing {rows} products as CSV and Parquet")
        files = write_products(work, rows)
        local = {**os.environ, **base}
        with redis_url_or_own(settings.redis_url) as url:
            app = bench_app(settings, url)
            try:
                queued = _through_worker(app, url, work, files, {**base, **tuned}, flags, local)
                second = None
                if from_compose:
                    log(f"(a2) again with compose's settings: {from_compose}")
                    env = {**base, **from_compose}
                    second = _through_worker(app, url, work, files, env, flags, None)
            finally:
                app.close()
        local_csv, local_pq = queued["csv_in_process"], queued["parquet_in_process"]
        diff = _max_diff(work / "a.csv", work / "b.csv")
    return {
        "rows": rows,
        "chunk_rows": chunk_rows or DEFAULT_CHUNK_ROWS,
        "in_flight": in_flight,
        **figures(queued, local_csv, local_pq),
        "compose": compose_line(from_compose, second, local_csv, local_pq)
        if compose
        else {"service": COMPOSE_SERVICE, "known": False, "skipped": True},
        "in_process_peak_rss_mb": max(local_csv["peak_rss_mb"], local_pq["peak_rss_mb"]),
        "max_abs_diff_usd_queue_vs_in_process": round(diff, 6),
    }


@contextmanager
def paused(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP) for the block: it takes no CPU from what runs there."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _through_worker(
    app: Celery,
    url: str,
    work: Path,
    files: tuple[Path, Path],
    worker_env: dict[str, str],
    flags: tuple[str, ...],
    local_env: dict[str, str] | None,
) -> dict[str, Any]:
    """One worker with ``worker_env``: CSV and Parquet through it. With ``local_env``,
    each right after in process (the worker stopped meanwhile), then lone jobs on the
    worker idle and during a third (CSV) run."""
    queue = f"bench-{uuid.uuid4().hex[:8]}-regression"
    env = {**os.environ, **worker_env, "INFERQ_REGRESSION_QUEUE": queue, "INFERQ_REDIS_URL": url}
    record = worker_settings(env)
    result: dict[str, Any] = {"settings": record}
    rds = redis.Redis.from_url(url)
    with rds, WorkerProcess(url, ("regression",), env=env, args=["-l", "WARNING"]) as worker:
        for fmt, source in (("csv", files[0]), ("parquet", files[1])):
            log(f"(a) {fmt} through worker pid {worker.pid} ({label(record)})")
            worker_cpu_s, redis_s = cpu_seconds(worker.pid) or 0.0, redis_cpu_s(rds)
            result[fmt] = run_score(source, work / f"a.{fmt}", env, *flags)
            # The worker's and Redis' shares of the run: with the producer's, the CPU a
            # row costs through the queue (a figure the load of other work moves less).
            result[fmt]["worker_cpu_s"] = round((cpu_seconds(worker.pid) or 0.0) - worker_cpu_s, 3)
            redis_after = redis_cpu_s(rds)
            result[fmt]["redis_cpu_s"] = (
                None if redis_s is None or redis_after is None else round(redis_after - redis_s, 3)
            )
            if local_env is not None:
                log(f"(b) {fmt} in process, the worker stopped")
                with paused(worker.pid):
                    result[f"{fmt}_in_process"] = run_score(
                        source, work / f"b.{fmt}", local_env, *flags, "--in-process"
                    )
        result["worker_peak_rss_mb"] = peak_rss_mb(worker.pid)
        if local_env is not None:
            result["stream_during_bulk"] = _latency(app, queue, work, files[0], env, flags)
    return result


def _latency(
    app: Celery, queue: str, work: Path, source: Path, env: dict[str, str], flags: tuple[str, ...]
) -> dict[str, Any]:
    payloads = predict_payloads(LONE_JOBS)
    log(f"{LONE_JOBS} lone jobs on the idle worker")
    idle = lone_jobs.idle(app, queue, payloads, LONE_JOBS)
    log("lone jobs while the CSV run goes again")
    output = work / "a-latency.csv"
    scoring = start_score(source, output, env, *flags)
    during = lone_jobs.during(app, queue, payloads, scoring.proc, output)
    return {
        "idle": idle,
        "during": during,
        "bulk_rows_per_s": round(scoring.summary()["rows_per_s"]),
    }
