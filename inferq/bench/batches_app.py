"""The anchors of `inferq bench stream`: what a Celery user writes instead of inferq.

A plain Celery app (nothing of inferq's worker: no direct path, no finisher, no
patched kombu channel), run with ``-P solo``, with two tasks:

* ``inferq.bench.batches_predict``: a celery-batches ``Batches`` task
  (``flush_every=64``, ``flush_interval=0.005``), the model loaded once, one
  ``predict_on_batch`` per batch and ``backend.mark_as_done`` per request: the
  forty lines issue 20 measured inferq against;
* ``inferq.bench.noop``: a no-op, the per-message ceiling of Celery in the solo pool.

Configured as such a user would (Celery's defaults but JSON, and the prefetch
multiplier of 128 that celery-batches needs to fill a batch). Started as
``celery -A inferq.bench.batches_app worker -P solo``; it touches INFERQ_READY_FILE
once it consumes. Only benchmark workers load it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from celery import Celery, signals
from celery_batches import Batches, SimpleRequest  # type: ignore[import-untyped]

from inferq.bench.anchors import (
    ANCHOR_CONFIG,
    BATCHES_PREDICT_TASK,
    FLUSH_EVERY,
    FLUSH_INTERVAL_S,
)
from inferq.bench.phases import BENCH_NOOP_TASK
from inferq.core.modelfile import RegressorMeta, read_meta
from inferq.core.settings import Settings

app = Celery("inferq-batches", set_as_current=False)
app.conf.update(ANCHOR_CONFIG)
# Read when Celery first needs its configuration (the worker's start), not at import.
app.add_defaults(lambda: {"broker_url": _url(), "result_backend": _url()})

_model: dict[str, tuple[Any, RegressorMeta]] = {}


def _url() -> str | None:
    return os.environ.get("INFERQ_REDIS_URL")


def _regressor() -> tuple[Any, RegressorMeta]:
    # Loaded on first use in the worker process (never at import); solo: one thread.
    if "model" not in _model:
        from worker.loading.keras_files import load_keras

        path = Settings.load().regressor_path
        _model["model"] = (load_keras(path), read_meta(path))
    return _model["model"]


@app.task(
    base=Batches,
    name=BATCHES_PREDICT_TASK,
    flush_every=FLUSH_EVERY,
    flush_interval=FLUSH_INTERVAL_S,
)
def batches_predict(requests: list[SimpleRequest]) -> None:
    model, meta = _regressor()
    rows = [req.kwargs["rows"] for req in requests]
    raw = np.array([[float(row[f]) for f in meta.features] for row in rows])
    dollars = meta.to_dollars(model.predict_on_batch(meta.scale_features(raw)))
    for req, value in zip(requests, np.asarray(dollars).reshape(-1), strict=True):
        app.backend.mark_as_done(req.id, {"earnings_usd": [float(value)]}, request=req)


@app.task(name=BENCH_NOOP_TASK)
def noop(rows: Any = None) -> dict[str, Any]:
    return {"ok": True}


@signals.worker_ready.connect
def _ready(sender: Any = None, **_: Any) -> None:
    ready_file = os.environ.get("INFERQ_READY_FILE")
    if ready_file:
        Path(ready_file).write_text("ready\n")
