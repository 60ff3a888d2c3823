"""A producer process of `inferq bench scale`, and the parent's side of running several.

Each producer (``python -m inferq.bench.loadgen SPEC``) builds its jobs, connects,
says ``ready``, and waits for ``go`` on stdin, so that start-up is outside the
measurement and all producers start together. A job producer sends every job before
its ready, into a staging list no host consumes (``stage``); at the go the parent
renames that list to the hosts' queue in one step, so every host starts on a full
backlog however fast the producers send, and the producers only read results in the
round. A bulk producer scores its file exactly as `inferq score` does (producer.bulk,
16,384-row chunks, 4 in flight). It prints one JSON line: when it started, finished
sending and was done (CLOCK_MONOTONIC, shared by every process on the machine), when
each answer came and how many units it held (so the parent can measure a window
inside the round: inferq.bench.scale_window), its CPU seconds over that span, and
how many jobs or rows failed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from celery import Celery
from celery.result import AsyncResult, ResultSet

from inferq.bench.phases import bench_app, send_all
from inferq.bench.stream import predict_payloads
from inferq.core.settings import Settings
from inferq.data import SAMPLE_IMAGES, sample_image
from producer.bulk.score_file import ScoreOptions, score_file
from producer.bulk.scorers import QueueScorer, RowErrors
from producer.client import Client
from producer.handles import Handle

# Payloads by kind: one-row predict_earnings arguments (the no-op task takes the same),
# or one sample photo as base64 with top 5.
# or a products file to score ("file": `source`, `jobs` is its row count).
KINDS = ("rows", "image", "file")
T = TypeVar("T")


@dataclass(frozen=True)
class ProducerSpec:
    url: str
    task: str
    queue: str
    kind: str
    jobs: int
    source: str | None = None
    stage: str | None = None  # job kinds: sent here before the ready (see the docstring)


def payloads(kind: str, jobs: int) -> list[dict[str, Any]]:
    if kind == "rows":
        return predict_payloads(jobs)
    photos = [base64.b64encode(sample_image(n).read_bytes()).decode() for n in SAMPLE_IMAGES]
    return [{"image_b64": photos[i % len(photos)], "top_k": 5} for i in range(jobs)]


class TimedScorer(QueueScorer):
    """`inferq score`'s scorer, noting when each chunk's answer was collected and its rows
    (chunks are collected in order: one answered early counts when its turn comes)."""

    def __init__(self, client: Client, chunk_timeout_s: float, resend_after_s: float) -> None:
        super().__init__(client, chunk_timeout_s, reuse_stored=False, resend_after_s=resend_after_s)
        self.completions: list[tuple[float, int]] = []

    def collect(self, ticket: Handle[Any], rows: int) -> tuple[Any, RowErrors]:
        out = super().collect(ticket, rows)
        self.completions.append((time.monotonic(), rows))
        return out


def collect_times(app: Celery, results: list[AsyncResult]) -> tuple[list[tuple[float, int]], int]:
    """Every result as it lands: (when, 1) each, and how many failed."""
    completions, failed = [], 0
    for _, meta in ResultSet(results, app=app).iter_native(timeout=600):
        completions.append((time.monotonic(), 1))
        failed += meta["status"] != "SUCCESS"
    return completions, failed


def ready_then_wait() -> tuple[float, float]:
    """Tell the parent we are ready, wait for its go; (CPU, monotonic) at the go."""
    print("ready", flush=True)
    sys.stdin.readline()
    return time.process_time(), time.monotonic()


def score(spec: ProducerSpec) -> dict[str, Any]:
    """`inferq score`'s run on ``spec.source``, through ``spec.queue``."""
    assert spec.source is not None
    update = {"redis_url": spec.url, "regression_queue": spec.queue}
    with Client(Settings.load().model_copy(update=update)) as client:
        # Asks a worker for the model (warms it). A chunk unanswered for 30 s is sent
        # again: no chunk takes that long here, and a lost one then shows as a slow round
        # rather than a stall of the client's default two minutes.
        scorer = TimedScorer(client, 600.0, resend_after_s=30.0)
        source = Path(spec.source)
        output = source.with_name(f"scored-{os.getpid()}.csv")  # producers share a source
        cpu0, started = ready_then_wait()
        summary = score_file(source, output, scorer, ScoreOptions())
        done = time.monotonic()
        output.unlink(missing_ok=True)  # tens of MB a round; only the counts are kept
    return {
        "started_at": started,
        "sent_at": done,
        "done_at": done,
        "cpu_s": time.process_time() - cpu0,
        "jobs": summary.rows,
        "failed": summary.failed + (spec.jobs - summary.rows),
        "completions": scorer.completions,
    }


def produce(spec: ProducerSpec) -> dict[str, Any]:
    """The producer's run, once ``go`` has come."""
    if spec.kind == "file":
        return score(spec)
    work = payloads(spec.kind, spec.jobs)
    app = bench_app(Settings.load(), spec.url)
    try:
        app.connection_for_write().ensure_connection(max_retries=3)
        results = send_all(app, spec.task, spec.stage, work)[0] if spec.stage else []
        cpu0, started = ready_then_wait()
        if not spec.stage:
            results = send_all(app, spec.task, spec.queue, work)[0]
        sent_at = time.monotonic()
        completions, failed = collect_times(app, results)
        return {
            "started_at": started,
            "sent_at": sent_at,
            "done_at": time.monotonic(),
            "cpu_s": time.process_time() - cpu0,
            "jobs": spec.jobs,
            "failed": failed,
            "completions": completions,
        }
    finally:
        app.close()


class ProducerError(RuntimeError):
    """A producer process failed to start or to finish."""


def run_producers(
    specs: Sequence[ProducerSpec],
    mark: Callable[[], T] | None = None,
    at_go: Callable[[], None] | None = None,
) -> tuple[list[T], list[dict[str, Any]]]:
    """Start one process per spec, wait until all are ready, then let them go together.
    ``mark()`` (CPU counters, say) right before the go and right after the last report,
    so start-up stays out of it; ``at_go()`` right after the first mark (the staged jobs
    released); the marks' values, and each producer's report."""
    argv = [sys.executable, "-m", "inferq.bench.loadgen"]
    procs = [
        subprocess.Popen(
            [*argv, json.dumps(asdict(s))], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for s in specs
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise ProducerError(f"producer exited {p.wait()} before it was ready")
        marks = [mark()] if mark is not None else []
        if at_go is not None:
            at_go()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = []
        for p in procs:
            out, _ = p.communicate(timeout=900)
            if p.returncode != 0:
                raise ProducerError(f"producer exited {p.returncode}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
        if mark is not None:
            marks.append(mark())
        return marks, reports
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


PREFERRED_NICE = -10  # a weight of ~9,500, beside the hosts' 10,240 (inferq.bench.cgroups)


def prefer(pid: int = 0) -> None:
    """Run ``pid`` (0: this thread, and the threads it starts) ahead of the machine's other
    work. Redis and the producers stand for machines of their own: when other work on
    this machine made Redis wait for a CPU, the hosts waited on its replies and ran
    under their caps (docs/scaling.md). Not root: left as it is."""
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, pid, PREFERRED_NICE)


def main(argv: list[str]) -> int:
    prefer()
    spec = ProducerSpec(**json.loads(argv[0]))
    print(json.dumps(produce(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
