"""Prometheus metrics of one worker process, served over HTTP on its own port.

Every worker process (``inferq worker --concurrency N`` starts N) keeps its own
registry and serves it on its own port; Prometheus scrapes each process and
sums across them. Metrics are plain module-level objects, updated whether or
not the endpoint is on (an increment costs well under a microsecond); the
HTTP server starts only when ``serve`` is called, from the worker's start-up
hooks, never at import.

The hot path stays cheap: the batch runner holds its model's children (no
label lookup per batch) and updates them after the batch's futures are set,
and a job does one counter increment and one histogram observation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from inferq.settings import Settings

# Our own registry, not the library's global one: only what this module defines
# (and the process's CPU, memory and GC) is served.
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
if GC_COLLECTOR is not None:  # absent on Pythons without gc.get_stats
    GCCollector(registry=REGISTRY)

# Rows per pass: powers of two, like the padding buckets (max batch size <= 65536).
ROW_BUCKETS = tuple(float(1 << i) for i in range(17))
# From a fraction of a millisecond (a small XLA pass) to the inference timeout.
SECONDS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0
)  # fmt: skip

JOBS = Counter(
    "inferq_jobs",
    "Jobs answered by this process, by task, model and outcome (ok or the error code).",
    ["task", "model", "outcome"],
    registry=REGISTRY,
)
JOB_SECONDS = Histogram(
    "inferq_job_seconds",
    "A job's time in its task body: validation, queue wait, forward pass, result building.",
    ["task", "model"],
    buckets=SECONDS_BUCKETS,
    registry=REGISTRY,
)
BATCH_ROWS = Histogram(
    "inferq_batch_rows",
    "Rows per forward pass, before padding (_sum: rows predicted, _count: passes).",
    ["model"],
    buckets=ROW_BUCKETS,
    registry=REGISTRY,
)
PADDED_ROWS = Counter(
    "inferq_batch_padded_rows",
    "Rows run through the model including the zero padding up to the bucket size.",
    ["model"],
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "inferq_queue_wait_seconds",
    "From a job's rows entering the batch queue to the start of their forward pass.",
    ["model"],
    buckets=SECONDS_BUCKETS,
    registry=REGISTRY,
)
INFERENCE = Histogram(
    "inferq_inference_seconds",
    "One forward pass: stack, pad, run the model (retries included).",
    ["model"],
    buckets=SECONDS_BUCKETS,
    registry=REGISTRY,
)
FAILED_BATCHES = Counter(
    "inferq_batch_failures",
    "Forward passes that failed after their retries (each job got inference_failed).",
    ["model"],
    registry=REGISTRY,
)
MODEL_INFO = Gauge(
    "inferq_model_info",
    "The models this process has loaded (value 1).",
    ["kind", "model", "version"],
    registry=REGISTRY,
)


class Queued(Protocol):
    """What the batch metrics need of a queued item (worker.batching.Pending)."""

    @property
    def queued_at(self) -> float: ...


class BatchMetrics:
    """The batch-level metrics of one model, label children looked up once."""

    def __init__(self, model: str) -> None:
        self.rows = BATCH_ROWS.labels(model)
        self.padded = PADDED_ROWS.labels(model)
        self.wait = QUEUE_WAIT.labels(model)
        self.inference = INFERENCE.labels(model)
        self.failed = FAILED_BATCHES.labels(model)

    def batch_done(
        self, items: Sequence[Queued], started: float, rows: int, padded: int, seconds: float
    ) -> None:
        self.rows.observe(rows)
        self.padded.inc(padded)
        self.inference.observe(seconds)
        self.waited(items, started)

    def batch_failed(self, items: Sequence[Queued], started: float) -> None:
        self.failed.inc()
        self.waited(items, started)

    def waited(self, items: Sequence[Queued], started: float) -> None:
        for item in items:
            self.wait.observe(started - item.queued_at)


# (task, model, outcome) -> its children. A plain dict read without a lock: two threads
# that both miss create the same children (labels() is idempotent), nothing worse.
_job_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}


def job_done(task: str, model: str, outcome: str, seconds: float) -> None:
    key = (task, model, outcome)
    children = _job_children.get(key)
    if children is None:
        children = _job_children[key] = (
            JOBS.labels(task, model, outcome),
            JOB_SECONDS.labels(task, model),
        )
    children[0].inc()
    children[1].observe(seconds)


def job_refused(task: str, outcome: str) -> None:
    """A message answered before any task body ran (worker.refusal): counted with
    model ``none`` and no duration. ``task`` must be one of ours or ``unknown``: a
    header's task name is the sender's string, and each label value is a new series."""
    JOBS.labels(task, "none", outcome).inc()


def model_loaded(kind: str, name: str, version: str) -> None:
    MODEL_INFO.labels(kind, name, version).set(1)


def port_for(settings: Settings) -> int | None:
    """This process's metrics port: the base port plus the process index, 0 for any
    free port (each process picks its own), None when metrics are not served."""
    base = settings.metrics_port
    if base is None or base == 0:
        return base
    return base + settings.process_index


def serve(host: str, port: int) -> int:
    """Start the HTTP endpoint (a daemon thread) and return the port it listens on."""
    # `_created` series (a timestamp per counter and histogram) double the page for
    # nothing Prometheus's text format uses; the switch is process-wide, so it is set here.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    # Never shut down: the daemon thread ends with the process, which frees the port.
    return int(server.server_port)
