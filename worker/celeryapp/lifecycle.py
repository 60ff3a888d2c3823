"""Worker life cycle: build the process's state, check models in the parent, load them
where jobs run, announce readiness, unload on shutdown.

With the threads pool (our default) jobs run in the worker process itself, so models
load there at ``worker_init``. With prefork they load in each child at
``worker_process_init``, never in the parent before fork (TensorFlow hangs in a
forked child). Either way the parent first checks the model files with h5py alone,
so a missing or broken file stops the worker at once with one clear line instead of
a loop of dying children.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

from celery import Celery, concurrency, signals
from celery.worker.control import inspect_command

from inferq.core import exit_codes
from inferq.core.broker import broker_refusal
from inferq.core.constants import HEALTH_COMMAND
from inferq.core.processes import announce
from inferq.core.routing import models_for
from inferq.core.settings import Settings
from inferq.errors import InferqError
from worker.celeryapp import refusal
from worker.celeryapp.blobs import blob_reader
from worker.celeryapp.channel import ReconnectSafeChannel
from worker.celeryapp.dead_letters import EntryGuard
from worker.celeryapp.holders import Holders, holder_ttl_s
from worker.celeryapp.state import WorkerState
from worker.loading.registry import check_files
from worker.metrics import port_for

log = logging.getLogger("inferq.worker")


def install(app: Celery) -> None:
    """Connect the life-cycle hooks for ``app`` (once per app)."""
    uid = f"inferq-{id(app)}"
    for signal, handler in (
        (signals.worker_init, on_worker_init),
        (signals.worker_ready, on_worker_ready),
        (signals.worker_shutdown, on_worker_shutdown),
        (signals.worker_process_init, functools.partial(on_worker_process_init, app)),
        (signals.after_setup_logger, on_after_setup_logger),
    ):
        signal.connect(handler, weak=False, dispatch_uid=f"{uid}-{signal.name}")


def on_after_setup_logger(loglevel: int | None = None, **_: Any) -> None:
    """Celery writes a line per job received at INFO, and inferq its own per job answered
    (id, task, model, outcome, elapsed: worker.celeryapp.state), which says all the first
    does: at INFO Celery's goes, as two lines per job were a sixth of a busy worker's CPU
    (docs/benchmarks.md). DEBUG keeps both."""
    if loglevel is None or loglevel > logging.DEBUG:
        logging.getLogger("celery.worker.strategy").setLevel(logging.WARNING)


def _say(message: str) -> None:
    """One line on stderr in one write: prefork children failing together never interleave."""
    sys.stderr.flush()
    os.write(sys.stderr.fileno(), f"inferq: {message}\n".encode(errors="replace"))


def _fail(message: str, exit_code: int = exit_codes.MODEL) -> None:
    _say(message)
    log.critical(message)
    # SystemExit passes through Celery's signal dispatch (which catches Exception).
    raise SystemExit(exit_code)


def _uses_prefork(worker: Any) -> bool:
    pool = concurrency.get_implementation(worker.pool_cls)
    return "prefork" in getattr(pool, "__module__", "")


def on_worker_init(sender: Any, **_: Any) -> None:
    app = sender.app
    settings: Settings = app.settings
    refused = broker_refusal(settings)
    if refused is not None and refused[0]:
        # Bad credentials never get better: fail now rather than let Celery retry forever.
        # (An unreachable Redis may come back, so that case is left to Celery's retries.)
        _fail(refused[1], exit_codes.BROKER)
    state = app.state = WorkerState.build(
        settings, models_for(set(app.amqp.queues.consume_from), settings)
    )
    state.read_blob = blob_reader(app.backend)
    # kombu's channel class is where entries are checked; it gets this worker's limit and
    # a way to answer the task id of an entry it dead-letters.
    answer = functools.partial(refusal.answer_dead_letter, app)
    ReconnectSafeChannel.guard = EntryGuard(
        settings.max_message_bytes, answer, consumer_errors=True
    )
    # Each consuming channel records the jobs it holds; what no live channel holds goes
    # back to its queue in seconds (worker.celeryapp.holders).
    ttl_s = holder_ttl_s(settings.visibility_timeout_s)
    ReconnectSafeChannel.holders = Holders(ttl_s, node=sender.hostname)
    ReconnectSafeChannel.on_drained = state.queues_drained
    # Before the models load: a port already taken fails the start in a second, not a minute.
    _start_metrics(sender, state)
    try:
        check_files(settings, set(state.kinds))
        if not _uses_prefork(sender):
            state.models.load(set(state.kinds))
    except InferqError as exc:
        _fail(exc.message)


def _start_metrics(worker: Any, state: WorkerState) -> None:
    port = port_for(state.settings)
    if port is None:
        return
    if _uses_prefork(worker):
        # Jobs would run in several children, each counting apart; one port cannot serve them.
        _say("metrics need the threads pool; none served")
        return
    host = state.settings.metrics_host
    try:
        state.metrics_port = state.metrics.serve(host, port)
    except (OSError, OverflowError) as exc:
        _fail(f"cannot serve metrics on {host}:{port}: {exc}", exit_codes.USAGE)


def on_worker_process_init(app: Celery, **_: Any) -> None:
    state: WorkerState | None = app.state
    if state is None or not state.kinds:
        return
    try:
        state.models.load(set(state.kinds))
    except InferqError as exc:
        # The parent checked the file already; a child that still fails must not be respawned.
        _say(exc.message)
        os._exit(exit_codes.MODEL)
    freeze_loaded_heap()


def freeze_loaded_heap() -> None:
    """Move every object alive now (the models, TensorFlow, Celery) out of the garbage
    collector's reach. They live as long as the process (a new model is a new worker
    process), yet each full collection walked them all: ~370k objects, 100-200 ms of
    CPU in which the worker answers nothing, 2 to 5 times in one `inferq bench stream`.
    On a 0.25-core host that was a swing of 10-20% in a round's rate (docs/scaling.md).
    Garbage is collected first, so none of it is kept for good."""
    gc.collect()
    gc.freeze()


def on_worker_ready(sender: Any, **_: Any) -> None:
    state: WorkerState = sender.app.state
    freeze_loaded_heap()  # threads pool: the models loaded at worker_init; prefork: the parent
    queues = ",".join(sorted(sender.app.amqp.queues.consume_from))
    served = state.models.versions().values()
    models = ",".join(f"{m['name']}@{m['version']}" for m in served) or "none"
    port = "off" if state.metrics_port is None else str(state.metrics_port)
    # sys.__stdout__: Celery redirects sys.stdout into its log at WARNING level.
    announce(
        f"inferq worker ready: node={sender.hostname} queues={queues} models={models} "
        f"metrics_port={port} {state.models.devices}",
        sys.__stdout__,
    )
    if state.settings.ready_file is not None:
        # Lines: node name, pid, and the metrics port when metrics are served.
        extra = [] if state.metrics_port is None else [state.metrics_port]
        _write_ready_file(state.settings.ready_file, [sender.hostname, os.getpid(), *extra])


def _write_ready_file(path: Path, lines: list[object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside, then renamed: a reader polling for the file never sees half of it
    # (the pid keeps the processes of `--concurrency N` apart).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in lines))
    tmp.replace(path)


@inspect_command(name=HEALTH_COMMAND)
def inferq_health(state: Any, **_: Any) -> dict[str, Any]:
    """The queues this worker consumes and the models it has loaded (`inferq health`)."""
    consumer = state.consumer.task_consumer
    queues = sorted(q.name for q in consumer.queues) if consumer is not None else []
    worker_state: WorkerState | None = state.consumer.app.state
    models = worker_state.models.versions() if worker_state is not None else {}
    return {"queues": queues, "models": models}


def on_worker_shutdown(sender: Any, **_: Any) -> None:
    holders = ReconnectSafeChannel.holders
    if holders is not None:
        holders.stop()
    state: WorkerState | None = sender.app.state
    if state is not None:
        state.models.unload()
