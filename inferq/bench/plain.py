"""The anchor of `inferq bench scale`: a plain Celery app with one no-op task.

Nothing of inferq's worker (no direct path, no batching, no model, no patched kombu
channel): Celery itself, with the configuration inferq's workers run with (JSON, late
acks, the threads pool and its job slots, prefetch 1). Started as
``celery -A inferq.bench.plain worker``; it touches INFERQ_READY_FILE once it consumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery, signals

from inferq.bench.phases import BENCH_NOOP_TASK
from inferq.core.celery_config import celery_config
from inferq.core.settings import Settings

app = Celery("inferq-plain", set_as_current=False)
# Read when Celery first needs its configuration (the worker's start), not at import.
app.add_defaults(lambda: celery_config(Settings.load()))


@app.task(name=BENCH_NOOP_TASK)
def noop(rows: Any = None) -> dict[str, Any]:
    return {"ok": True}


@signals.worker_ready.connect
def _ready(sender: Any = None, **_: Any) -> None:
    ready_file = Settings.load().ready_file
    if ready_file is not None:
        Path(ready_file).write_text("ready\n")
