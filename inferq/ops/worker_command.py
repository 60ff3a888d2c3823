"""`inferq worker`: check settings, model files and Redis, then run Celery workers.

The checks run before any worker process starts, so a missing model or an
unreachable broker ends the command at once with one line saying which. This
module also holds the one definition of the `celery -A worker worker` command
line, which the benchmarks and tests use too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

from inferq.core import exit_codes
from inferq.core.broker import check_broker
from inferq.core.routing import QUEUE_MODELS, queue_names
from inferq.core.settings import Settings
from inferq.errors import InferqError

# Mingle and gossip make every start wait a second for neighbours; task events
# and heartbeats (what Flower and `inspect` use) stay on.
CELERY_FLAGS = ("--without-mingle", "--without-gossip")


def celery_worker_args(
    queues: Sequence[str], nodename: str, loglevel: str, *extra: str
) -> list[str]:
    """The arguments of `celery -A worker` that start one worker process."""
    return ["worker", "-Q", ",".join(queues), "-n", nodename, "-l", loglevel, *CELERY_FLAGS, *extra]


def celery_command(
    queues: Sequence[str], nodename: str, loglevel: str, *extra: str, app: str = "worker"
) -> list[str]:
    """The whole `python -m celery -A worker worker ...` command line of one worker process
    (``app``: another Celery app, such as the benchmarks' plain one)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        *celery_worker_args(queues, nodename, loglevel, *extra),
    ]


def default_nodename(queues: Sequence[str], index: int | None = None) -> str:
    # The pid keeps several workers on one host distinct (no duplicate-nodename warnings).
    suffix = f"-{index}" if index is not None else ""
    return f"inferq-{'+'.join(queues)}{suffix}-{os.getpid()}@%h"


def preflight(settings: Settings, logical_queues: Sequence[str]) -> tuple[int, str] | None:
    """(exit code, reason) when the worker cannot serve; None when it can."""
    from worker.loading.registry import check_files

    try:
        check_files(settings, {QUEUE_MODELS[q] for q in logical_queues})
    except InferqError as exc:
        return exit_codes.MODEL, exc.message
    problem = check_broker(settings)
    if problem:
        hint = (
            "" if settings.redis_url else " (INFERQ_REDIS_URL is unset; `inferq redis` starts one)"
        )
        return exit_codes.BROKER, problem + hint
    return None


def run_worker(
    settings: Settings,
    logical_queues: Sequence[str],
    concurrency: int,
    hostname: str | None,
    loglevel: str,
) -> int:
    try:
        queues = queue_names(logical_queues, settings)
    except ValueError as exc:
        print(f"inferq: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    failed = preflight(settings, logical_queues)
    if failed:
        print(f"inferq: {failed[1]}", file=sys.stderr)
        return failed[0]
    if concurrency <= 1:
        # Set before anything in this process can start CUDA, which reads it only once.
        os.environ.update(settings.cuda_env())
        from worker import app

        app.use_settings(settings)
        node = hostname or default_nodename(logical_queues)
        app.worker_main(celery_worker_args(queues, node, loglevel))
        return 0
    commands = [
        celery_command(
            queues, f"{hostname}-{i}" if hostname else default_nodename(logical_queues, i), loglevel
        )
        for i in range(1, concurrency + 1)
    ]
    return supervise(commands, settings)


def supervise(commands: Sequence[Sequence[str]], settings: Settings) -> int:
    """Run one worker process per command; forward SIGTERM/SIGINT; worst exit code wins.

    Each process gets these settings in its environment, with its own index
    (INFERQ_PROCESS_INDEX, 0..N-1: its metrics port) and, with INFERQ_GPUS, its own GPU
    (there from exec, before CUDA can read it). A child still starting when the signal
    comes dies of it (Celery's handler is not installed yet): that is the stop that was
    asked for, not a failure.
    """
    procs = []
    for index, command in enumerate(commands):
        own = settings.model_copy(update={"process_index": index})
        env = {**os.environ, **own.to_env(), **own.cuda_env()}
        procs.append(subprocess.Popen(list(command), env=env))
    forwarded: set[int] = set()

    def forward(signum: int, _frame: FrameType | None) -> None:
        forwarded.add(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [p.wait() for p in procs]
    codes = [0 if code < 0 and -code in forwarded else code for code in codes]
    return max(codes, key=abs)
