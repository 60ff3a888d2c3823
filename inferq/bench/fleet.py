"""One worker process per simulated host, started once and measured at every host count.

For host counts such as 1, 2, 4 each logical queue (regression, vision, noop) gets one
private queue per count, and host i consumes the queues of every count >= i: jobs
sent to the count-2 queue are served by hosts 1 and 2 alone, the others wait idle.
So the counts take turns on the same warm processes (TensorFlow is loaded once), and
each round's figures come from the same hosts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from inferq.bench.hosts import SimHosts
from inferq.bench.phases import BENCH_INCLUDE, log
from inferq.ops.worker_command import celery_command
from inferq.ops.worker_process import WorkerProcess

# Which settings name each logical queue's worker-side name (so the worker loads the
# queue's model); the no-op queue of the plain Celery app has none.
QUEUE_SETTINGS = {"regression": "INFERQ_REGRESSION_QUEUE", "vision": "INFERQ_VISION_QUEUE"}
START_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class FleetSpec:
    name: str  # "serving", "bulk", "plain"
    logical_queues: tuple[str, ...]
    env: Mapping[str, str]
    app: str = "worker"  # the Celery app: inferq's worker, or inferq.bench.plain


@dataclass(frozen=True)
class Fleet:
    queues: Mapping[int, Mapping[str, str]]  # host count -> logical queue -> queue name
    workers: Sequence[WorkerProcess]

    def queue(self, count: int, logical: str) -> str:
        return self.queues[count][logical]


def fleet_queues(spec: FleetSpec, counts: Sequence[int], tag: str) -> dict[int, dict[str, str]]:
    return {n: {q: f"scale-{tag}-{spec.name}-{q}-{n}" for q in spec.logical_queues} for n in counts}


def host_queues(queues: Mapping[int, Mapping[str, str]], host: int) -> list[str]:
    """The queues host ``host`` (1-based) consumes: those of every count it belongs to."""
    return [name for n, by_logical in queues.items() if n >= host for name in by_logical.values()]


@contextmanager
def fleet(
    hosts: SimHosts, url: str, spec: FleetSpec, counts: Sequence[int], cores: float, logs: Path
) -> Iterator[Fleet]:
    """Start a worker on each host (uncapped, side by side), cap the hosts at ``cores``,
    yield; stop every worker (warm) and lift the cap on the way out. Worker logs go to
    ``logs``; a worker that failed is named with its log's tail."""
    queues = fleet_queues(spec, counts, uuid.uuid4().hex[:6])
    largest = queues[max(counts)]
    env = {**spec.env, **{QUEUE_SETTINGS[q]: largest[q] for q in largest if q in QUEUE_SETTINGS}}
    extra = BENCH_INCLUDE if spec.app == "worker" else ("-P", "threads")
    workers = []
    for host in range(1, max(counts) + 1):
        argv = celery_command(
            host_queues(queues, host), f"{spec.name}-h{host}@%h", "WARNING", *extra, app=spec.app
        )
        log_path = logs / f"{spec.name}-h{host}.log"
        workers.append(
            WorkerProcess(url, env=env, argv=hosts.exec_argv(host, argv), log_path=log_path)
        )
    try:
        hosts.cap(None)
        with ThreadPoolExecutor(len(workers)) as pool:
            list(pool.map(lambda w: w.start(START_TIMEOUT_S), workers))
        hosts.cap(cores)
        log(f"{spec.name}: {len(workers)} hosts ready, each capped at {cores} core")
        yield Fleet(queues, workers)
    except BaseException:
        for host, worker in enumerate(workers, start=1):
            log(f"{spec.name} host {host} log tail:\n{worker.log_tail(1500)}")
        raise
    finally:
        hosts.cap(None)  # first: a warm shutdown under the cap is slow
        for worker in workers:
            worker.close()
