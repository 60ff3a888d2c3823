"""`inferq bench scale`'s figures: the medians, the efficiency against one host, the
checks that say whether the curve is a measurement at all, and the table.

A party's **load** is the share of its ceiling it used in a round's window: the least
busy host's cgroup CPU against its cap, the busiest producer process against one core
(a Python process's ceiling), redis-server against one core (it runs commands on one
thread), the machine's busy CPU against its cores.

A workload's curve **fails** (``status``: ``failed``, with its reasons) when:
efficiency is above 1.0 at some count (n hosts cannot do more than n times one
host's work: the one-host figure was not a host's capacity); the median round at
some count had a host below 90% of its cap (the hosts waited for work or for a CPU:
the figure is the senders' or the machine's, not the hosts'); a round was too short
to measure a window in; a count's rounds spread more than ±10% around their median;
or jobs failed.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from inferq.bench.scale_window import SATURATED_LOAD, Round
from inferq.bench.settings_record import label

UNITS = {"stream": "jobs/s", "bulk": "rows/s", "vision": "images/s", "celery_noop": "jobs/s"}
MAX_EFFICIENCY = 1.0
MAX_SPREAD = 0.10  # each round within ±10% of its count's median


def median(rounds: Sequence[Round]) -> Round:
    """The round with the median rate (the upper one of an even count)."""
    return sorted(rounds, key=lambda r: r.rate)[len(rounds) // 2]


def efficiency(rates: Mapping[int, float]) -> dict[str, float]:
    """rate(n) / (n x rate(1)) for each count n: 1.0 is perfect scaling."""
    base = rates[min(rates)] / min(rates)
    return {str(n): round(rate / (n * base), 3) for n, rate in rates.items()}


def spread(rounds: Sequence[Round]) -> float:
    """How far the farthest round is from the median rate, as a share of it."""
    mid = statistics.median(r.rate for r in rounds)
    return round(max(abs(r.rate - mid) for r in rounds) / mid, 3)


def failures(by_count: Mapping[int, Sequence[Round]]) -> list[str]:
    """Why a workload's curve is not a measurement of its hosts (none: it is)."""
    medians = {n: median(rs) for n, rs in by_count.items()}
    reasons = [
        f"efficiency {e} at {n} hosts: above {MAX_EFFICIENCY}"
        for n, e in efficiency({n: r.rate for n, r in medians.items()}).items()
        if e > MAX_EFFICIENCY
    ]
    reasons += [
        f"{n} hosts: a host at {min(r.hosts_load)} of its cap (under {SATURATED_LOAD})"
        for n, r in medians.items()
        if not r.hosts_saturated
    ]
    reasons += [
        f"{n} hosts: answers in too few bursts to measure a window (rounds too short)"
        for n, rs in by_count.items()
        if not all(r.windowed for r in rs)
    ]
    reasons += [
        f"{n} hosts: rounds spread ±{spread(rs):.0%} (over ±{MAX_SPREAD:.0%})"
        for n, rs in by_count.items()
        if len(rs) > 1 and spread(rs) > MAX_SPREAD
    ]
    failed = sum(r.failed for rs in by_count.values() for r in rs)
    return reasons + ([f"{failed} jobs failed"] if failed else [])


def report(
    results: Mapping[str, Mapping[int, Sequence[Round]]],
    sizes: Mapping[str, Any],
    machine: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON: one object per workload (host count -> rate), then the detail."""
    medians = {w: {n: median(rs) for n, rs in by_n.items()} for w, by_n in results.items()}
    out: dict[str, Any] = {
        w: {str(n): r.rate for n, r in by_n.items()} for w, by_n in medians.items()
    }
    out["efficiency"] = {
        w: efficiency({n: r.rate for n, r in by_n.items()}) for w, by_n in medians.items()
    }
    reasons = {w: failures(by_n) for w, by_n in results.items()}
    out["status"] = {w: "failed" if why else "ok" for w, why in reasons.items()}
    out["failures"] = {w: why for w, why in reasons.items() if why}
    out["cpu"] = {
        w: {str(n): {**asdict(r), "saturated": r.saturated} for n, r in by_n.items()}
        for w, by_n in medians.items()
    }
    out["rounds"] = {
        w: {str(n): [r.rate for r in rs] for n, rs in by_n.items()} for w, by_n in results.items()
    }
    out["spread"] = {
        w: {str(n): spread(rs) for n, rs in by_n.items()} for w, by_n in results.items()
    }
    out["units"] = {w: UNITS[w] for w in medians}
    out["failed"] = sum(r.failed for by_n in results.values() for rs in by_n.values() for r in rs)
    out["sizes"] = dict(sizes)
    out["machine"] = dict(machine)
    return out


def _row(workload: str, n: str, result: Mapping[str, Any]) -> str:
    cpu = result["cpu"][workload][n]
    hosts = ", ".join(f"{c:.2f}" for c in cpu["hosts_cores"])
    throttled = ", ".join(f"{t:.0%}" for t in cpu["throttled_periods"])
    redis_cores = "?" if cpu["redis_cores"] is None else f"{cpu['redis_cores']:.2f}"
    depth = cpu["depth"]
    return (
        f"| {workload} | {n} | {result[workload][n]:,.1f} {result['units'][workload]}"
        f" | {result['efficiency'][workload][n]:.2f} | ±{result['spread'][workload][n]:.0%}"
        f" | {hosts} (min {min(cpu['hosts_load']):.2f} of cap) | {throttled}"
        f" | {cpu['host_cpu_us_per_unit']:,.1f}"
        f" | {cpu['producers_cores']:.2f} ({cpu['producer_max_cores']:.2f}) | {redis_cores}"
        f" | {cpu['machine_cores']:.2f} | {depth['min']:g} to {depth['max']:g}"
        f" (empty {depth['empty_share']:.0%}) | {cpu['saturated']} |"
    )


def table(result: Mapping[str, Any]) -> str:
    """A Markdown table: each workload's rate, efficiency and CPU per party by host count,
    then each failed curve's reasons and each workload's worker settings."""
    lines = [
        "| workload | hosts | rate | efficiency | rounds | host CPU (cores) | periods throttled "
        "| host CPU per unit (µs) | producers (busiest) | redis | machine | queue depth "
        "| closest to its ceiling |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for workload in result["units"]:
        lines.extend(_row(workload, n, result) for n in result[workload])
    for workload, why in result.get("failures", {}).items():
        lines.append(f"\n**{workload}: FAILED measurement**, not a result: {'; '.join(why)}")
    settings = result.get("settings", {})
    if settings:  # each workload's worker settings, beside its figures
        lines.append("")
        lines.extend(
            f"{workload} workers: {label(record)}" for workload, record in settings.items()
        )
    idle = result.get("machine", {}).get("idle_cpus")
    if idle:
        lines.append(f"idle CPUs: {idle}")
    return "\n".join(lines)
