"""A producer process of `inferq bench scale`, and the parent's side of running several.

Each producer (``python -m inferq.bench.loadgen SPEC``) builds its jobs, connects,
says ``ready``, and waits for ``go`` on stdin, so that start-up is outside the
measurement and all producers start together. It then either sends every job at
once (the queue holds the backlog: the hosts, not the send loop, set the pace) and
reads every result, or, for a bulk producer, scores its file exactly as `inferq
score` does (producer.bulk, 16,384-row chunks, 4 in flight). It prints one JSON line:
when it started, finished sending and was done (CLOCK_MONOTONIC, shared by every
process on the machine), its CPU seconds over that span, and how many jobs or rows
failed.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from inferq.bench.phases import bench_app, collect, send_all
from inferq.bench.stream import predict_payloads
from inferq.core.settings import Settings
from inferq.data import SAMPLE_IMAGES, sample_image
from producer.bulk.score_file import ScoreOptions, score_file
from producer.bulk.scorers import QueueScorer
from producer.client import Client

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


def payloads(kind: str, jobs: int) -> list[dict[str, Any]]:
    if kind == "rows":
        return predict_payloads(jobs)
    photos = [base64.b64encode(sample_image(n).read_bytes()).decode() for n in SAMPLE_IMAGES]
    return [{"image_b64": photos[i % len(photos)], "top_k": 5} for i in range(jobs)]


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
        scorer = QueueScorer(client, 600.0, reuse_stored=False, resend_after_s=30.0)
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
    }


def produce(spec: ProducerSpec) -> dict[str, Any]:
    """The producer's run, once ``go`` has come."""
    if spec.kind == "file":
        return score(spec)
    work = payloads(spec.kind, spec.jobs)
    app = bench_app(Settings.load(), spec.url)
    try:
        app.connection_for_write().ensure_connection(max_retries=3)
        cpu0, started = ready_then_wait()
        results, sent = send_all(app, spec.task, spec.queue, work)
        sent_at = time.monotonic()
        _, _, failed = collect(app, results, sent)
        return {
            "started_at": started,
            "sent_at": sent_at,
            "done_at": time.monotonic(),
            "cpu_s": time.process_time() - cpu0,
            "jobs": spec.jobs,
            "failed": failed,
        }
    finally:
        app.close()


class ProducerError(RuntimeError):
    """A producer process failed to start or to finish."""


def run_producers(
    specs: Sequence[ProducerSpec], mark: Callable[[], T] | None = None
) -> tuple[list[T], list[dict[str, Any]]]:
    """Start one process per spec, wait until all are ready, then let them go together.
    ``mark()`` (CPU counters, say) right before the go and right after the last report,
    so start-up stays out of it; its two values, and each producer's report."""
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


def main(argv: list[str]) -> int:
    spec = ProducerSpec(**json.loads(argv[0]))
    print(json.dumps(produce(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
