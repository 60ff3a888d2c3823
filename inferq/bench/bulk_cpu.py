"""Where a bulk run's CPU went, and the rate this machine's cores allow the queue path.

Through the queue three processes share the machine: `inferq score` (reading, parsing,
encoding, writing), the worker (decoding, the model) and redis-server; in process one
does it all. The rate ratio compares wall times. This compares what each path costs a
row, and gives the **ceiling**: the queue path's rate were every core of the machine
busy with it (its CPU per row against the cores), as a share of the in-process rate.
A ratio above the ceiling cannot come from better scheduling on this machine, only
from less CPU per row (docs/benchmarks.md, "Bulk").
"""

from __future__ import annotations

import os
from typing import Any

PER_ROWS = 1_000_000


def cores() -> int:
    """The CPUs this process may run on (a container's or taskset's, not the host's)."""
    return len(os.sched_getaffinity(0))


def cpu_budget(queued: dict[str, Any], local: dict[str, Any], rows: int) -> dict[str, Any]:
    """``queued``: one run through the worker (its summary, with ``worker_cpu_s`` and
    ``redis_cpu_s`` added); ``local``: the same file in process. CPU seconds per 1M rows
    for each party, the cores each path kept busy, and the ceiling."""
    scale = PER_ROWS / rows
    redis_s = queued.get("redis_cpu_s") or 0.0  # None: INFO refused, counted as nothing
    total = queued["cpu_s"] + queued["worker_cpu_s"] + redis_s
    ceiling = cores() * rows / total if total > 0 else float("inf")
    return {
        "per_1m_rows_s": {
            "producer": round(queued["cpu_s"] * scale, 3),
            "worker": round(queued["worker_cpu_s"] * scale, 3),
            "redis": round(redis_s * scale, 3),
            "queue_total": round(total * scale, 3),
            "in_process": round(local["cpu_s"] * scale, 3),
        },
        "cores_busy": {
            "queue": round(total / queued["seconds"], 2),
            "in_process": round(local["cpu_s"] / local["seconds"], 2),
        },
        "cores": cores(),
        "ceiling_rows_per_s": round(ceiling),
        "ceiling_ratio": round(ceiling / local["rows_per_s"], 3),
    }


def budget_line(name: str, budget: dict[str, Any]) -> str:
    """One line of the table: the CPU a million rows cost each way, and the ceiling."""
    per, busy = budget["per_1m_rows_s"], budget["cores_busy"]
    return (
        f"  {name:<8} CPU s per 1M rows: producer {per['producer']} + worker "
        f"{per['worker']} + redis {per['redis']} = {per['queue_total']} "
        f"({busy['queue']} cores busy) vs in process {per['in_process']} "
        f"({busy['in_process']}); ceiling on {budget['cores']} cores: "
        f"{budget['ceiling_rows_per_s']:,} rows/s = ratio {budget['ceiling_ratio']}"
    )
