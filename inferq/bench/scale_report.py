"""`inferq bench scale`'s figures: one round's CPU per party, the medians, the
efficiency against one host, which party ran out first, and the table.

A party's **load** is the share of its ceiling it used during the round: a host's
cgroup CPU against its cap, the busiest producer process against one core (a Python
process's ceiling), redis-server against one core (it runs commands on one thread),
the machine's busy CPU against its cores. The party with the highest load is the one
that saturated; at 0.9 or more it is called saturated outright.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import redis

from inferq.bench.settings_record import label

SATURATED_LOAD = 0.9
UNITS = {"stream": "jobs/s", "bulk": "rows/s", "vision": "images/s", "celery_noop": "jobs/s"}


def redis_cpu_s(client: redis.Redis) -> float | None:
    try:
        # redis-py types its sync and asyncio clients as one: this one returns a dict.
        info = cast("dict[str, Any]", client.info("cpu"))
    except redis.RedisError:
        return None  # e.g. an ACL user without INFO: the figure is left out, not faked
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def machine_busy_s() -> float:
    """CPU seconds all cores of the machine spent busy since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Round:
    rate: float
    elapsed_s: float
    failed: int
    send_rate: float | None  # jobs/s the producers sent at, all together
    hosts_cores: list[float]  # each host's CPU over the round, in cores
    host_cpu_us_per_unit: float  # all hosts' CPU per job, image or row: the cost of one
    throttled_s: list[float]  # each host's time held back by its cap
    producers_cores: float
    producer_max_cores: float  # the busiest producer process
    redis_cores: float | None
    machine_cores: float
    load: dict[str, float]

    @classmethod
    def of(
        cls,
        *,
        rate: float,
        elapsed_s: float,
        before: Mapping[str, Any],
        after: Mapping[str, Any],
        producer_cpu_s: Sequence[float],
        failed: int,
        send_rate: float | None,
        cap: float,
    ) -> Round:
        def cores(seconds: float) -> float:
            return round(seconds / elapsed_s, 3)

        hosts = [cores(a - b) for a, b in zip(after["hosts"], before["hosts"], strict=True)]
        throttled = zip(after["throttled"], before["throttled"], strict=True)
        held = [round(a - b, 2) for a, b in throttled]
        rds = (
            None if None in (before["redis"], after["redis"]) else after["redis"] - before["redis"]
        )
        producer_max = cores(max(producer_cpu_s))
        machine = cores(after["machine"] - before["machine"])
        load = {
            "hosts": round(sum(hosts) / (cap * len(hosts)), 3),
            "producers": producer_max,
            "redis": cores(rds) if rds is not None else 0.0,
            "machine": round(machine / (os.cpu_count() or 1), 3),
        }
        return cls(
            rate=round(rate, 1),
            elapsed_s=round(elapsed_s, 2),
            failed=failed,
            send_rate=None if send_rate is None else round(send_rate, 1),
            hosts_cores=hosts,
            host_cpu_us_per_unit=round(sum(hosts) / rate * 1e6, 3),
            throttled_s=held,
            producers_cores=cores(sum(producer_cpu_s)),
            producer_max_cores=producer_max,
            redis_cores=None if rds is None else cores(rds),
            machine_cores=machine,
            load=load,
        )

    @property
    def saturated(self) -> str:
        return max(self.load, key=lambda party: self.load[party])


def median(rounds: Sequence[Round]) -> Round:
    """The round with the median rate (the upper one of an even count)."""
    return sorted(rounds, key=lambda r: r.rate)[len(rounds) // 2]


def efficiency(rates: Mapping[int, float]) -> dict[str, float]:
    """rate(n) / (n x rate(1)) for each count n: 1.0 is perfect scaling."""
    base = rates[min(rates)] / min(rates)
    return {str(n): round(rate / (n * base), 3) for n, rate in rates.items()}


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
    out["cpu"] = {
        w: {str(n): {**asdict(r), "saturated": r.saturated} for n, r in by_n.items()}
        for w, by_n in medians.items()
    }
    out["rounds"] = {
        w: {str(n): [r.rate for r in rs] for n, rs in by_n.items()} for w, by_n in results.items()
    }
    out["units"] = {w: UNITS[w] for w in medians}
    out["failed"] = sum(r.failed for by_n in results.values() for rs in by_n.values() for r in rs)
    out["sizes"] = dict(sizes)
    out["machine"] = dict(machine)
    return out


def table(result: Mapping[str, Any]) -> str:
    """A Markdown table: each workload's rate, efficiency and CPU per party by host count."""
    lines = [
        "| workload | hosts | rate | efficiency | host CPU (each, cores) | host CPU per unit (µs) "
        "| producers (busiest) | redis | machine | saturated |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for workload, unit in result["units"].items():
        for n, rate in result[workload].items():
            cpu = result["cpu"][workload][n]
            hosts = ", ".join(f"{c:.2f}" for c in cpu["hosts_cores"])
            redis_cores = "?" if cpu["redis_cores"] is None else f"{cpu['redis_cores']:.2f}"
            party = cpu["saturated"]
            load = cpu["load"][party]
            mark = f"**{party}** {load:.2f}" if load >= SATURATED_LOAD else f"{party} {load:.2f}"
            lines.append(
                f"| {workload} | {n} | {rate:,.1f} {unit} | {result['efficiency'][workload][n]:.2f}"
                f" | {hosts} | {cpu['host_cpu_us_per_unit']:,.1f}"
                f" | {cpu['producers_cores']:.2f} ({cpu['producer_max_cores']:.2f})"
                f" | {redis_cores} | {cpu['machine_cores']:.2f} | {mark} |"
            )
    settings = result.get("settings", {})
    if settings:  # each workload's worker settings, beside its figures
        lines.append("")
        lines.extend(
            f"{workload} workers: {label(record)}" for workload, record in settings.items()
        )
    return "\n".join(lines)
