"""Worker life cycle: check models in the parent, load them where tasks run.

With the threads pool (our default) tasks run in the worker process itself,
so models load there at ``worker_init``. With prefork they load in each child
at ``worker_process_init``, never in the parent before fork (TensorFlow hangs
in a forked child). Either way the parent first checks the model files with
h5py alone, so a missing or broken file stops the worker at once with one
clear line instead of a loop of dying children.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from celery import concurrency, signals
from celery.worker.control import inspect_command

from inferq.constants import HEALTH_COMMAND
from inferq.errors import InferqError
from inferq.procutil import announce
from inferq.settings import Settings, SettingsError
from inferq.worker_main import EXIT_BROKER, EXIT_CONFIG, broker_refusal
from worker import (
    devices,
    metrics,
    refusal,  # noqa: F401  (connects the hooks that answer refused messages)
    registry,
)

log = logging.getLogger("inferq.worker")

EXIT_MODEL = 3  # the worker's exit status when its models cannot be loaded

# Read once at worker_init; a prefork child inherits both through fork.
_models: set[str] = set()
_settings: list[Settings] = []
_metrics_port: list[int] = []  # the port actually bound (INFERQ_METRICS_PORT=0 picks one)


def models_for(queues: set[str], settings: Settings) -> set[str]:
    """The models a worker needs for the queues it consumes (and only those)."""
    wanted = {settings.regression_queue: "regressor", settings.vision_queue: "classifier"}
    return {model for queue, model in wanted.items() if queue in queues}


def _fail(message: str, exit_code: int = EXIT_MODEL) -> None:
    print(f"inferq: {message}", file=sys.stderr, flush=True)
    log.critical(message)
    # SystemExit passes through Celery's signal dispatch (which catches Exception).
    raise SystemExit(exit_code)


def _uses_prefork(worker: Any) -> bool:
    pool = concurrency.get_implementation(worker.pool_cls)
    return "prefork" in getattr(pool, "__module__", "")


@signals.worker_init.connect
def on_worker_init(sender: Any, **_: Any) -> None:
    try:
        settings = Settings.load()
    except SettingsError as exc:
        _fail(f"invalid settings: {exc}")
        return
    refused = broker_refusal(settings.broker_url)
    if refused is not None and refused[0]:
        # Bad credentials never get better: fail now rather than let Celery retry forever.
        # (An unreachable Redis may come back, so that case is left to Celery's retries.)
        _fail(refused[1], EXIT_BROKER)
        return
    _settings.append(settings)
    # Before the models load: a port already taken fails the start in a second, not a minute.
    _start_metrics(sender, settings)
    _models.update(models_for(set(sender.app.amqp.queues.consume_from), settings))
    try:
        registry.check_files(settings, _models)
        if not _uses_prefork(sender):
            registry.load(settings, _models)
    except InferqError as exc:
        _fail(exc.message)


def _start_metrics(worker: Any, settings: Settings) -> None:
    port = metrics.port_for(settings)
    if port is None:
        return
    if _uses_prefork(worker):
        # Tasks would run in several children, each counting apart; one port cannot serve them.
        print("inferq: metrics need the threads pool; none served", file=sys.stderr, flush=True)
        return
    try:
        _metrics_port.append(metrics.serve(settings.metrics_host, port))
    except (OSError, OverflowError) as exc:
        _fail(f"cannot serve metrics on {settings.metrics_host}:{port}: {exc}", EXIT_CONFIG)


@signals.worker_process_init.connect
def on_worker_process_init(**_: Any) -> None:
    if not _models:
        return
    try:
        registry.load(_settings[0], _models)
    except InferqError as exc:
        # The parent checked the file already; a child that still fails must not be respawned.
        print(f"inferq: {exc.message}", file=sys.stderr, flush=True)
        os._exit(EXIT_MODEL)


@signals.worker_ready.connect
def on_worker_ready(sender: Any, **_: Any) -> None:
    settings = _settings[0]
    queues = ",".join(sorted(sender.app.amqp.queues.consume_from))
    models = ",".join(f"{n}@{v}" for n, v in registry.loaded().items()) or "none"
    port = str(_metrics_port[0]) if _metrics_port else "off"
    # sys.__stdout__: Celery redirects sys.stdout into its log at WARNING level.
    announce(
        f"inferq worker ready: node={sender.hostname} queues={queues} models={models} "
        f"metrics_port={port} {devices.summary()}",
        sys.__stdout__,
    )
    if settings.ready_file is not None:
        # Lines: node name, pid, and the metrics port when metrics are served.
        _write_ready_file(settings.ready_file, [sender.hostname, os.getpid(), *_metrics_port])


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
    return {"queues": queues, "models": registry.served_models()}


@signals.worker_shutdown.connect
def on_worker_shutdown(**_: Any) -> None:
    registry.unload()
