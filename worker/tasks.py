"""Celery tasks of the job contract (README "Job contract").

A task validates its own payload, hands the rows to the model's batch runner
and waits for its share of the forward pass: I/O and validation in the job
thread, compute in the runner thread. It returns the result or raises a typed
InferqError; Celery stores either before acking (acks_late).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from inferq.constants import MODEL_INFO_TASK, PREDICT_TASK
from inferq.contract import BatchInfo, ModelInfo, PredictResult, RegressorInfo, Timings
from inferq.errors import InferqError
from worker import registry
from worker.app import app

log = logging.getLogger("inferq.jobs")


# resultrepr_maxsize: Celery repr()s every result for its log line and task event; a
# short repr costs a third of a full one and keeps predictions out of logs.
@app.task(name=PREDICT_TASK, bind=True, throws=(InferqError,), resultrepr_maxsize=48)
def predict_earnings(self: Any, rows: Any) -> dict[str, Any]:
    started = time.monotonic()
    served = registry.regressor()
    try:
        raw = served.validator.validate(rows)
        scaled = served.meta.scale_features(raw).astype(np.float32)
        outputs, parts = served.runner.infer(scaled, served.timeout_s)
    except InferqError as exc:
        log.info(
            "job=%s model=%s rows=%s outcome=%s elapsed_ms=%.1f",
            self.request.id,
            served.meta.name,
            _count(rows),
            exc.info.get("code"),
            (time.monotonic() - started) * 1000,
        )
        raise
    first = parts[0]
    total_ms = (time.monotonic() - started) * 1000
    log.info(
        "job=%s model=%s rows=%d batch=%d batch_rows=%d outcome=ok elapsed_ms=%.1f",
        self.request.id,
        served.meta.name,
        len(raw),
        first.batch_id,
        first.batch_rows,
        total_ms,
    )
    result = PredictResult(
        earnings_usd=[float(v) for v in served.meta.to_dollars(outputs)],
        model=ModelInfo(name=served.meta.name, version=served.version),
        batch=BatchInfo(
            id=first.batch_id,
            rows=first.batch_rows,
            padded_rows=first.padded_rows,
            jobs=first.batch_jobs,
            passes=len(parts),
        ),
        # Microsecond resolution is plenty, and short numbers keep results small.
        timings_ms=Timings(
            batch_wait_ms=round(sum(p.wait_ms for p in parts), 3),
            inference_ms=round(sum(p.inference_ms for p in parts), 3),
            total_ms=round(total_ms, 3),
        ),
    )
    return result.model_dump()


def _count(rows: Any) -> int | str:
    return len(rows) if isinstance(rows, list) else 1 if isinstance(rows, dict) else "?"


@app.task(name=MODEL_INFO_TASK, throws=(InferqError,))
def regressor_info() -> dict[str, Any]:
    served = registry.regressor()
    meta = served.meta
    return RegressorInfo(
        model=ModelInfo(name=meta.name, version=served.version),
        features=list(meta.features),
        target=meta.target,
        inputs=meta.inputs,
    ).model_dump()
