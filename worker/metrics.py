"""Prometheus metrics of one worker process, served over HTTP on its own port.

Every worker process (``inferq worker --concurrency N`` starts N) builds one
``Metrics`` at start-up, with its own registry, and serves it on its own port;
Prometheus scrapes each process and sums across them. Counters are updated
whether or not the endpoint is on (an increment costs well under a
microsecond); the HTTP server starts only when ``serve`` is called.

The hot path stays cheap: each batch runner holds its model's ``BatchMetrics``
(no label lookup per batch), updated after the batch's futures are set, and a
job does one counter increment and one histogram observation.
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

from inferq.core.settings import Settings

# Rows per pass: powers of two, like the padding buckets (max batch size <= 65536).
ROW_BUCKETS = tuple(float(1 << i) for i in range(17))
# From a fraction of a millisecond (a small XLA pass) to the inference timeout.
SECONDS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0
)  # fmt: skip


class Queued(Protocol):
    """What the batch metrics need of a queued item (worker.engine.batching.Pending)."""

    @property
    def queued_at(self) -> float: ...


class Metrics:
    """One process's registry and metric families (only these, plus CPU, memory and GC)."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        if GC_COLLECTOR is not None:  # absent on Pythons without gc.get_stats
            GCCollector(registry=registry)
        self.jobs = Counter(
            "inferq_jobs",
            "Jobs answered by this process, by task, model and outcome (ok or the error code).",
            ["task", "model", "outcome"],
            registry=registry,
        )
        self.job_seconds = Histogram(
            "inferq_job_seconds",
            "A job's time in the worker: validation, queue wait, forward pass, result building.",
            ["task", "model"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.model_info = Gauge(
            "inferq_model_info",
            "The models this process has loaded (value 1).",
            ["kind", "model", "version"],
            registry=registry,
        )
        self._batches = _BatchFamilies(registry)
        # (task, model, outcome) -> its children. A plain dict read without a lock: two
        # threads that both miss create the same children (labels() is idempotent).
        self._job_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    def for_model(self, model: str) -> BatchMetrics:
        return BatchMetrics(self._batches, model)

    def job_done(self, task: str, model: str, outcome: str, seconds: float) -> None:
        key = (task, model, outcome)
        children = self._job_children.get(key)
        if children is None:
            children = self._job_children[key] = (
                self.jobs.labels(task, model, outcome),
                self.job_seconds.labels(task, model),
            )
        children[0].inc()
        children[1].observe(seconds)

    def job_refused(self, task: str, outcome: str) -> None:
        """A message answered before any job ran (worker.celeryapp.refusal): counted with
        model ``none`` and no duration. ``task`` must be one of ours or ``unknown``: a
        header's task name is the sender's string, and each label value is a new series."""
        self.jobs.labels(task, "none", outcome).inc()

    def model_loaded(self, kind: str, name: str, version: str) -> None:
        self.model_info.labels(kind, name, version).set(1)

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint (a daemon thread) and return the port it listens on."""
        # `_created` series (a timestamp per counter and histogram) double the page for
        # nothing Prometheus's text format uses; the switch is process-wide.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        # Never shut down: the daemon thread ends with the process, which frees the port.
        return int(server.server_port)


class _BatchFamilies:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Histogram(
            "inferq_batch_rows",
            "Rows per forward pass, before padding (_sum: rows predicted, _count: passes).",
            ["model"],
            buckets=ROW_BUCKETS,
            registry=registry,
        )
        self.padded = Counter(
            "inferq_batch_padded_rows",
            "Rows run through the model including the zero padding up to the bucket size.",
            ["model"],
            registry=registry,
        )
        self.wait = Histogram(
            "inferq_queue_wait_seconds",
            "From a job's rows entering the batch queue to the start of their forward pass.",
            ["model"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.inference = Histogram(
            "inferq_inference_seconds",
            "One forward pass: stack, pad, run the model (retries included).",
            ["model"],
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.failed = Counter(
            "inferq_batch_failures",
            "Forward passes that failed after their retries (each job got inference_failed).",
            ["model"],
            registry=registry,
        )


class BatchMetrics:
    """The batch-level metrics of one model, label children looked up once; the batch
    runner's observer (worker.engine.runner.BatchObserver)."""

    def __init__(self, families: _BatchFamilies, model: str) -> None:
        self.rows = families.rows.labels(model)
        self.padded = families.padded.labels(model)
        self.wait = families.wait.labels(model)
        self.inference = families.inference.labels(model)
        self.failed = families.failed.labels(model)

    def batch_done(
        self, items: Sequence[Queued], started: float, rows: int, padded: int, seconds: float
    ) -> None:
        self.rows.observe(rows)
        self.padded.inc(padded)
        self.inference.observe(seconds)
        self._waited(items, started)

    def batch_failed(self, items: Sequence[Queued], started: float) -> None:
        self.failed.inc()
        self._waited(items, started)

    def _waited(self, items: Sequence[Queued], started: float) -> None:
        for item in items:
            self.wait.observe(started - item.queued_at)


def port_for(settings: Settings) -> int | None:
    """This process's metrics port: the base port plus the process index, 0 for any
    free port (each process picks its own), None when metrics are not served."""
    base = settings.metrics_port
    if base is None or base == 0:
        return base
    return base + settings.process_index
