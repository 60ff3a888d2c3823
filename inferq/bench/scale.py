"""`inferq bench scale`: throughput against the number of simulated worker hosts.

Each host is a network namespace whose processes run under a CPU cap (inferq.bench.hosts);
Redis and the producers run outside, uncapped, so the hosts are the party that runs
out first and the curve shows what one more host adds. For each host count, in one
run, on the same warm worker processes (inferq.bench.fleet):

- ``stream``: one-row ``predict_earnings`` jobs/s from several producer processes;
- ``vision``: ``classify_image`` images/s, likewise;
- ``celery_noop``: the anchor, a plain Celery app's no-op task (inferq.bench.plain)
  under the same caps and the same producers;
- ``bulk``: rows/s of ``inferq score`` on a generated CSV.

Each measurement also records the CPU each party used (every host's cgroup, the
producers, redis-server from its own INFO, the whole machine from /proc/stat), so the
report can say which party ran out first (inferq.bench.scale_report).
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from inferq.bench.bulk import write_products
from inferq.bench.fleet import Fleet, FleetSpec, fleet
from inferq.bench.hosts import SimHosts, why_no_hosts
from inferq.bench.loadgen import ProducerSpec, run_producers
from inferq.bench.phases import BENCH_NOOP_TASK, log
from inferq.bench.scale_report import Round, machine_busy_s, redis_cpu_s, report
from inferq.bench.scale_sizes import WORKLOADS, ScaleSizes
from inferq.bench.settings_record import worker_settings
from inferq.core.constants import CLASSIFY_TASK, PREDICT_TASK, SCORE_CHUNK_TASK
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer

# workload -> (fleet, logical queue, task, payload kind)
JOB_WORKLOADS = {
    "stream": ("serving", "regression", PREDICT_TASK, "rows"),
    "bulk": ("bulk", "regression", SCORE_CHUNK_TASK, "file"),
    "vision": ("vision", "vision", CLASSIFY_TASK, "image"),
    "celery_noop": ("plain", "noop", BENCH_NOOP_TASK, "rows"),
}


class HostsUnavailable(RuntimeError):
    """Simulated hosts cannot be made here (no namespaces or no cgroup CPU cap)."""


@dataclass
class Run:
    """What every measurement of one run shares."""

    hosts: SimHosts
    rds: redis.Redis
    local_url: str  # Redis as the producers reach it
    sizes: ScaleSizes
    settings: Settings
    files: dict[int, list[str]] = field(default_factory=dict)  # bulk: count -> its files

    def mark(self, count: int) -> dict[str, Any]:
        groups = [self.hosts.group(i) for i in range(1, count + 1)]
        return {
            "hosts": [g.usage_s() for g in groups],
            "throttled": [g.throttled()[1] for g in groups],
            "redis": redis_cpu_s(self.rds),
            "machine": machine_busy_s(),
        }


def job_round(run: Run, fl: Fleet, workload: str, count: int) -> Round:
    """Every producer sends its share at once (or scores its file); all results read."""
    _, logical, task, kind = JOB_WORKLOADS[workload]
    total = run.sizes.per_host(workload) * count
    shares = split(total, run.sizes.producers)
    queue = fl.queue(count, logical)
    sources = run.files.get(count, [None] * len(shares))
    specs = [
        ProducerSpec(run.local_url, task, queue, kind, n, src)
        for n, src in zip(shares, sources, strict=True)
    ]
    (before, after), reports = run_producers(specs, lambda: run.mark(count))
    start = min(r["started_at"] for r in reports)
    elapsed_s = max(r["done_at"] for r in reports) - start
    sent_s = max(r["sent_at"] for r in reports) - start
    return Round.of(
        rate=total / elapsed_s,
        elapsed_s=elapsed_s,
        before=before,
        after=after,
        producer_cpu_s=[r["cpu_s"] for r in reports],
        failed=sum(r["failed"] for r in reports),
        send_rate=total / sent_s if kind != "file" and sent_s > 0 else None,
        cap=run.sizes.host_cpu,
    )


def split(total: int, parts: int) -> list[int]:
    shares = [total // parts] * parts
    shares[0] += total - sum(shares)
    return [n for n in shares if n > 0]


def write_files(run: Run, work: Path) -> None:
    """Each bulk producer's file for each host count (the count's rows, split). Files
    differ in content: a chunk's task id comes from its file's digest, and two runs of
    one file at once would share ids, and so results (each deletes what it collected)."""
    for count in run.sizes.hosts:
        for i, rows in enumerate(split(run.sizes.rows_per_host * count, run.sizes.producers)):
            folder = work / f"bulk-{count}-{i}"
            folder.mkdir()
            csv_path, parquet_path = write_products(folder, rows, seed=100 * count + i)
            parquet_path.unlink()  # only the CSV is scored
            run.files.setdefault(count, []).append(str(csv_path))


def rounds_of(run: Run, workload: str, measure: Callable[[int], Round]) -> dict[int, list[Round]]:
    """Every count once per round, the order reversed each round (1,2,4 then 4,2,1), so no
    count always runs first, right after another has warmed the caches."""
    out: dict[int, list[Round]] = {n: [] for n in run.sizes.hosts}
    for i in range(run.sizes.rounds):
        order = run.sizes.hosts if i % 2 == 0 else tuple(reversed(run.sizes.hosts))
        for count in order:
            log(f"{workload} round {i + 1}/{run.sizes.rounds}: {count} host(s)")
            out[count].append(measure(count))
    return out


def fleet_specs(run: Run) -> dict[str, FleetSpec]:
    model_env = {
        "INFERQ_REGRESSOR_PATH": str(run.settings.regressor_path.resolve()),
        "INFERQ_MODELS_DIR": str(run.settings.models_dir.resolve()),
    }
    # Vision workers hold two batches of images, not the default 2 x the regression batch
    # (128 images, 8 batches): a host that grabbed 128 images at the end of a round would
    # keep working while the others idle.
    vision_slots = 2 * run.settings.vision_max_batch_size
    return {
        "serving": FleetSpec("serving", ("regression",), model_env),
        "vision": FleetSpec(
            "vision", ("vision",), {**model_env, "INFERQ_JOB_SLOTS": str(vision_slots)}
        ),
        "plain": FleetSpec("plain", ("noop",), {}, app="inferq.bench.plain"),
        # The shipped defaults: a chunk's rows run in bulk passes of their own size.
        "bulk": FleetSpec("bulk", ("regression",), model_env),
    }


def fleet_settings(specs: dict[str, FleetSpec]) -> dict[str, Any]:
    """What each fleet's workers ran with (inferq.bench.settings_record), by workload."""
    by_fleet = {name: worker_settings({**os.environ, **spec.env}) for name, spec in specs.items()}
    return {w: by_fleet[fleet_name] for w, (fleet_name, *_) in JOB_WORKLOADS.items()}


def measure_fleet(run: Run, url: str, spec: FleetSpec, work: Path) -> dict[str, Any]:
    """The rounds of every asked-for workload this fleet serves."""
    wanted = [w for w in run.sizes.workloads if JOB_WORKLOADS[w][0] == spec.name]
    if not wanted:
        return {}
    if "bulk" in wanted:
        log("writing the bulk producers' CSV files")
        write_files(run, work)
    results = {}
    with fleet(run.hosts, url, spec, run.sizes.hosts, run.sizes.host_cpu, work) as fl:
        for workload in wanted:
            warm(run, fl, workload)
            measure = functools.partial(job_round, run, fl, workload)
            results[workload] = rounds_of(run, workload, measure)
    return results


def warm(run: Run, fl: Fleet, workload: str) -> None:
    """A few jobs through every host (the largest count's queue) before measuring."""
    _, logical, task, kind = JOB_WORKLOADS[workload]
    count = max(run.sizes.hosts)
    queue = fl.queue(count, logical)
    if kind == "file":  # the same task, one row per job: warms the bulk workers' model
        logical, task, kind = "regression", PREDICT_TASK, "rows"
    run_producers([ProducerSpec(run.local_url, task, queue, kind, 8 * count)])


def run_scale_bench(settings: Settings, sizes: ScaleSizes) -> dict[str, Any]:
    reason = why_no_hosts()
    if reason is not None:
        raise HostsUnavailable(reason)
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {}
    with (
        SimHosts(max(sizes.hosts)) as hosts,
        RedisServer(bind=("127.0.0.1", hosts.server_address)) as server,
        tempfile.TemporaryDirectory(prefix="inferq-bench-scale-") as tmp,
    ):
        url = f"redis://{hosts.server_address}:{server.port}/0"  # as the hosts reach it
        rds = redis.Redis.from_url(server.url)
        run = Run(hosts, rds, server.url, sizes, settings)
        specs = fleet_specs(run)
        try:
            for spec in specs.values():
                results |= measure_fleet(run, url, spec, Path(tmp))
        finally:
            rds.close()
        cgroup_version = hosts.cgroup_version
    machine = {
        "cpu_cores": os.cpu_count(),
        "cgroup": f"v{cgroup_version}",
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
    }
    out = report(results, {**asdict(sizes), "producers_per_round": sizes.producers}, machine)
    wanted = set(sizes.workloads)
    out["settings"] = {w: r for w, r in fleet_settings(specs).items() if w in wanted}
    return out


def parse_hosts(text: str) -> tuple[int, ...]:
    counts = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    if not counts or counts[0] < 1:
        raise ValueError(f"host counts must be positive integers like 1,2,4; got {text!r}")
    return counts


def parse_workloads(text: str) -> tuple[str, ...]:
    names: Sequence[str] = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise ValueError(f"workloads are {', '.join(WORKLOADS)}; got {text!r}")
    return tuple(names)
