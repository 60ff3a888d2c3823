"""Tasks that exist for `inferq bench` baselines only, never loaded by a serving worker.

Benchmark workers load this module explicitly (``--include inferq.bench.tasks``:
inferq.bench.phases.BENCH_INCLUDE). ``noop`` is the per-message ceiling of Celery on this broker.
``seed_predict`` is the course's way: ``model.predict`` on one job at a time, no
batching.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from inferq.bench.phases import BENCH_NOOP_TASK, BENCH_SEED_TASK
from inferq.core.modelfile import RegressorMeta, read_meta
from worker import app
from worker.loading.keras_files import load_keras

_seed_lock = threading.Lock()
_seed: dict[str, tuple[Any, RegressorMeta]] = {}


@app.task(name=BENCH_NOOP_TASK)
def noop(rows: Any = None) -> dict[str, Any]:
    return {"ok": True}


@app.task(name=BENCH_SEED_TASK)
def seed_predict(rows: Any) -> dict[str, Any]:
    model, meta = _seed_model()
    rows = [rows] if isinstance(rows, dict) else rows
    raw = np.array([[float(row[f]) for f in meta.features] for row in rows])
    scaled = model.predict(meta.scale_features(raw), verbose=0)
    return {"earnings_usd": [float(v) for v in meta.to_dollars(scaled)]}


def _seed_model() -> tuple[Any, RegressorMeta]:
    # Loaded on first use in the worker process (never at import, never in a parent).
    with _seed_lock:
        if "model" not in _seed:
            path = app.settings.regressor_path
            _seed["model"] = (load_keras(path), read_meta(path))
        return _seed["model"]
