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
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from inferq.bench.bulk import write_products
from inferq.bench.fleet import Fleet, FleetSpec, fleet
from inferq.bench.hosts import SimHosts, why_no_hosts
from inferq.bench.idle_poll import polling_idle
from inferq.bench.loadgen import ProducerSpec, prefer, run_producers
from inferq.bench.phases import BENCH_NOOP_TASK, log
from inferq.bench.scale_report import report
from inferq.bench.scale_sampler import Sampler, stored_answers, take
from inferq.bench.scale_sizes import WORKLOADS, ScaleSizes
from inferq.bench.scale_window import Round, Window, window
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
    trace: Path | None = None  # where each round's samples and answers go, if anywhere


def job_round(run: Run, fl: Fleet, workload: str, count: int) -> Round:
    """Job kinds: every producer queues its share before the go, staged, and the go
    hands the whole backlog to the hosts at once; bulk: every producer scores its file.
    All results read; the figure is the window of inferq.bench.scale_window."""
    _, logical, task, kind = JOB_WORKLOADS[workload]
    total = run.sizes.per_host(workload) * count
    shares = split(total, run.sizes.producers)
    queue = fl.queue(count, logical)
    stage = None if kind == "file" else f"{queue}-staged"
    sources = run.files.get(count, [None] * len(shares))
    specs = [
        ProducerSpec(run.local_url, task, queue, kind, n, src, stage)
        for n, src in zip(shares, sources, strict=True)
    ]
    groups = [run.hosts.group(i) for i in range(1, count + 1)]

    go_at: list[float] = []

    def release() -> None:
        if stage is not None:
            run.rds.rename(stage, queue)  # wakes the hosts' blocked pops at once
        go_at.append(time.monotonic())

    with Sampler(lambda: take(run.rds, queue, groups)) as sampler:
        _, reports = run_producers(specs, at_go=release)
    if run.trace is not None:
        write_trace(run.trace / f"{workload}-{count}-{time.monotonic():.3f}.json", sampler, reports)
    if stage is None:  # bulk: the chunks as their producers collected them
        answers = [c for r in reports for c in r["completions"]]
    else:
        answers = stored_answers(sampler.samples, go_at[0])
    load_avg = round(os.getloadavg()[0], 2)
    return Round.of(
        window_or_round(answers), sampler.samples, reports, run.sizes.host_cpu, load_avg
    )


def window_or_round(answers: list[Any]) -> Window:
    """The 10-90% window; where the answers came in too few bursts for one (a round of a
    batch or two), the whole round, which the report then calls too short to measure."""
    try:
        return window(answers)
    except ValueError:
        times = [float(t) for t, _ in answers]
        return Window(min(times), max(times), sum(int(u) for _, u in answers), whole=True)


def write_trace(path: Path, sampler: Sampler, reports: list[dict[str, Any]]) -> None:
    """A round's raw material, to look into a figure after the run."""
    samples = [asdict(s) for s in sampler.samples]
    path.write_text(json.dumps({"samples": samples, "reports": reports}))


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
    """One whole round at the largest count, not recorded: every host has then run full
    batches from a deep queue, with whatever a first time costs (pool threads started,
    buffers grown, first passes of each size) behind it."""
    log(f"{workload}: a round at {max(run.sizes.hosts)} hosts to warm them, not recorded")
    job_round(run, fl, workload, max(run.sizes.hosts))


def run_scale_bench(
    settings: Settings, sizes: ScaleSizes, trace: Path | None = None
) -> dict[str, Any]:
    """Every asked-for workload at every count; ``trace``: a folder for each round's
    samples and answers (inferq.bench.scale_sampler), to look into a figure later."""
    reason = why_no_hosts()
    if reason is not None:
        raise HostsUnavailable(reason)
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {}
    with (
        polling_idle() as idle,
        SimHosts(max(sizes.hosts)) as hosts,
        RedisServer(bind=("127.0.0.1", hosts.server_address)) as server,
        tempfile.TemporaryDirectory(prefix="inferq-bench-scale-") as tmp,
    ):
        url = f"redis://{hosts.server_address}:{server.port}/0"  # as the hosts reach it
        if server.process is not None:
            prefer(server.process.pid)
        rds = redis.Redis.from_url(server.url)
        run = Run(hosts, rds, server.url, sizes, settings, trace=trace)
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
        "idle_cpus": idle,
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
    }
    per_host = {w: sizes.per_host(w) for w in sizes.workloads}  # what each round really sent
    recorded = {**asdict(sizes), "per_host": per_host, "producers_per_round": sizes.producers}
    out = report(results, recorded, machine)
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
