"""`inferq bench bulk`: a large products file scored through Redis vs in process.

In one run: generate an N-row products CSV (and the same rows as Parquet);
(a) score it with `inferq score` through one worker, CSV in and CSV out, then
Parquet to Parquet; (b) stop the worker (so the two do not share the CPU) and
score the same files with `inferq score --in-process`: one Python process that
reads, runs the same model file with one XLA-compiled function on large batches,
and writes the same output. Both are separate processes, so their peak memory
is theirs alone; the rate is the scoring time each reports, start-up excluded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from inferq.bench.phases import log
from inferq.core.constants import COURSE_TARGET
from inferq.core.settings import Settings
from inferq.ops.redis_server import redis_url_or_own
from inferq.ops.worker_process import WorkerProcess
from inferq.tools.sample_data import generate


def write_products(directory: Path, rows: int, seed: int = 11) -> tuple[Path, Path]:
    """The same N products (features only) as CSV and as Parquet."""
    cols = generate(rows, seed=seed)
    cols.pop(COURSE_TARGET)
    table = pa.table(cols)
    csv_path, parquet_path = directory / "products.csv", directory / "products.parquet"
    pacsv.write_csv(table, csv_path)
    pq.write_table(table, parquet_path)
    return csv_path, parquet_path


def peak_rss_mb(pid: int) -> float | None:
    """A live process's peak resident memory (VmHWM), from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def run_score(source: Path, output: Path, env: dict[str, str], *extra: str) -> dict[str, Any]:
    """`inferq score` in a child process: its summary, plus its peak memory and CPU seconds
    (rusage: the whole child, start-up included)."""
    summary_path = output.with_name(output.name + ".summary.json")
    argv = [sys.executable, "-m", "inferq", "score", str(source), "-o", str(output)]
    proc = subprocess.Popen([*argv, "--summary-json", str(summary_path), *extra], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"inferq score exited {proc.returncode}")
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    summary["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    summary["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
    return summary


def _max_diff(a: Path, b: Path) -> float:
    x = pacsv.read_csv(a).column("earnings_usd").to_numpy()
    y = pacsv.read_csv(b).column("earnings_usd").to_numpy()
    return float(np.max(np.abs(x - y))) if len(x) == len(y) else float("inf")


def run_bulk_bench(
    settings: Settings, *, rows: int, chunk_rows: int, in_flight: int, max_batch: int
) -> dict[str, Any]:
    model = str(settings.regressor_path.resolve())
    flags = ("--chunk-rows", str(chunk_rows), "--in-flight", str(in_flight))
    with tempfile.TemporaryDirectory(prefix="inferq-bench-bulk-") as tmp:
        work = Path(tmp)
        log(f"writing {rows} products as CSV and Parquet")
        csv_in, pq_in = write_products(work, rows)
        queue = f"bench-{uuid.uuid4().hex[:8]}-regression"
        env = {
            **os.environ,
            "INFERQ_REGRESSION_QUEUE": queue,
            "INFERQ_REGRESSOR_PATH": model,
            "INFERQ_MAX_BATCH_SIZE": str(max_batch),
        }
        with redis_url_or_own(settings.redis_url) as url:
            env["INFERQ_REDIS_URL"] = url
            with WorkerProcess(url, ("regression",), env=env, args=["-l", "WARNING"]) as worker:
                log(f"(a) CSV -> CSV through worker pid {worker.pid}")
                queue_csv = run_score(csv_in, work / "a.csv", env, *flags)
                log("(a) Parquet -> Parquet through the worker")
                queue_pq = run_score(pq_in, work / "a.parquet", env, *flags)
                worker_peak = peak_rss_mb(worker.pid)
        log("(b) CSV -> CSV in process")
        local_csv = run_score(csv_in, work / "b.csv", env, *flags, "--in-process")
        log("(b) Parquet -> Parquet in process")
        local_pq = run_score(pq_in, work / "b.parquet", env, *flags, "--in-process")
        diff = _max_diff(work / "a.csv", work / "b.csv")
    return {
        "rows": rows,
        "chunk_rows": chunk_rows,
        "in_flight": in_flight,
        "worker_max_batch_size": max_batch,
        "queue_rows_per_s": round(queue_csv["rows_per_s"]),
        "in_process_rows_per_s": round(local_csv["rows_per_s"]),
        "ratio": round(queue_csv["rows_per_s"] / local_csv["rows_per_s"], 3),
        "parquet_queue_rows_per_s": round(queue_pq["rows_per_s"]),
        "parquet_in_process_rows_per_s": round(local_pq["rows_per_s"]),
        "parquet_ratio": round(queue_pq["rows_per_s"] / local_pq["rows_per_s"], 3),
        "producer_peak_rss_mb": max(queue_csv["peak_rss_mb"], queue_pq["peak_rss_mb"]),
        "worker_peak_rss_mb": worker_peak,
        "in_process_peak_rss_mb": max(local_csv["peak_rss_mb"], local_pq["peak_rss_mb"]),
        "max_abs_diff_usd_queue_vs_in_process": round(diff, 6),
        "failed_rows": queue_csv["failed"] + queue_pq["failed"],
    }
