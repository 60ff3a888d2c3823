"""`inferq bench bulk`'s figures from its runs, and the table that prints them."""

from __future__ import annotations

from typing import Any

from inferq.bench.bulk_cpu import budget_line, cpu_budget
from inferq.bench.settings_record import compose_status, label

COMPOSE_SERVICE = "regression-worker"
FORMAT_NAMES = (("csv", "CSV"), ("parquet", "Parquet"))


def figures(
    queued: dict[str, Any], local_csv: dict[str, Any], local_pq: dict[str, Any]
) -> dict[str, Any]:
    csv, pq = queued["csv"], queued["parquet"]
    return {
        "settings": queued["settings"],
        "worker_max_batch_size": queued["settings"]["effective"]["max_batch_size"],
        "worker_bulk_batch_size": queued["settings"]["effective"]["bulk_batch_size"],
        "queue_rows_per_s": round(csv["rows_per_s"]),
        "in_process_rows_per_s": round(local_csv["rows_per_s"]),
        "ratio": round(csv["rows_per_s"] / local_csv["rows_per_s"], 3),
        "parquet_queue_rows_per_s": round(pq["rows_per_s"]),
        "parquet_in_process_rows_per_s": round(local_pq["rows_per_s"]),
        "parquet_ratio": round(pq["rows_per_s"] / local_pq["rows_per_s"], 3),
        "stream_during_bulk": queued["stream_during_bulk"],
        "producer_peak_rss_mb": max(csv["peak_rss_mb"], pq["peak_rss_mb"]),
        "producer_cpu_s": {"csv": csv["run_cpu_s"], "parquet": pq["run_cpu_s"]},
        "worker_cpu_s": {"csv": csv["worker_cpu_s"], "parquet": pq["worker_cpu_s"]},
        "worker_peak_rss_mb": queued["worker_peak_rss_mb"],
        "failed_rows": csv["failed"] + pq["failed"],
        "cpu": {
            "csv": cpu_budget(csv, local_csv, csv["rows"]),
            "parquet": cpu_budget(pq, local_pq, pq["rows"]),
        },
    }


def compose_line(
    overrides: dict[str, str] | None,
    queued: dict[str, Any] | None,
    local_csv: dict[str, Any],
    local_pq: dict[str, Any],
) -> dict[str, Any]:
    """The compose regression worker's figures: the same run where it keeps the defaults."""
    if overrides is None:
        return {"service": COMPOSE_SERVICE, "known": False}
    if queued is None:
        return {"service": COMPOSE_SERVICE, "known": True, "same_as_defaults": True}
    csv, pq = queued["csv"]["rows_per_s"], queued["parquet"]["rows_per_s"]
    return {
        "service": COMPOSE_SERVICE,
        "known": True,
        "same_as_defaults": False,
        "settings": queued["settings"],
        "worker_max_batch_size": queued["settings"]["effective"]["max_batch_size"],
        "worker_bulk_batch_size": queued["settings"]["effective"]["bulk_batch_size"],
        "queue_rows_per_s": round(csv),
        "ratio": round(csv / local_csv["rows_per_s"], 3),
        "parquet_queue_rows_per_s": round(pq),
        "parquet_ratio": round(pq / local_pq["rows_per_s"], 3),
        "failed_rows": queued["csv"]["failed"] + queued["parquet"]["failed"],
    }


def table(result: dict[str, Any]) -> str:
    """The figures as a few lines, each with the settings it was measured with."""
    lat = result["stream_during_bulk"]
    lines = [
        f"bulk, {result['rows']:,} rows; worker: {label(result['settings'])}",
        f"  CSV      {result['queue_rows_per_s']:>10,} rows/s   in process "
        f"{result['in_process_rows_per_s']:>10,}   ratio {result['ratio']}",
        f"  Parquet  {result['parquet_queue_rows_per_s']:>10,} rows/s   in process "
        f"{result['parquet_in_process_rows_per_s']:>10,}   ratio {result['parquet_ratio']}",
        f"  lone jobs p50/p95 ms: idle {lat['idle']['p50_ms']}/{lat['idle']['p95_ms']}, "
        f"during bulk {lat['during']['p50_ms']}/{lat['during']['p95_ms']} "
        f"({lat['during']['jobs']} jobs; that run {lat['bulk_rows_per_s']:,} rows/s)",
    ]
    lines += [budget_line(name, result["cpu"][fmt]) for fmt, name in FORMAT_NAMES]
    compose = result["compose"]
    status = compose_status(compose)
    if status is not None:
        lines.append(status)
    else:
        lines.append(
            f"compose ({label(compose['settings'])}): CSV {compose['queue_rows_per_s']:,} "
            f"rows/s, ratio {compose['ratio']}; Parquet {compose['parquet_queue_rows_per_s']:,}"
            f" rows/s, ratio {compose['parquet_ratio']}"
        )
    lines.append(f"failed rows: {result['failed_rows']}")
    return "\n".join(lines)
