"""Celery tasks of the job contract (README "Job contract").

A task validates its own payload, hands its rows or image to the model's batch
runner and waits for its share of the forward pass: I/O, validation and
decoding in the job thread, compute in the runner thread. It returns the
result or raises a typed InferqError; Celery stores either before acking
(acks_late). Small predict jobs do not reach these bodies: worker.direct runs them
with the same helpers (predict_inputs, predict_result, record_job).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from inferq.constants import CLASSIFY_TASK, MODEL_INFO_TASK, PREDICT_TASK
from inferq.contract import ModelInfo, RegressorInfo
from inferq.errors import InferqError, InvalidInput
from worker import metrics, registry
from worker.app import app
from worker.images import load_image
from worker.runner import BatchOutput

log = logging.getLogger("inferq.jobs")
T = TypeVar("T")

# resultrepr_maxsize: Celery repr()s every result for its log line and task event; a
# short repr costs a third of a full one and keeps predictions out of logs.
JOB_OPTIONS: dict[str, Any] = {"bind": True, "throws": (InferqError,), "resultrepr_maxsize": 48}


def to_ms(seconds: float) -> float:
    # Microsecond resolution is plenty, and short numbers keep results small.
    return round(seconds * 1000, 3)


def _batch(parts: list[BatchOutput]) -> dict[str, int]:
    """BatchInfo as a dict. Results are built as plain dicts in the shape of the contract's
    models (tests validate them against the published JSON Schema): constructing and
    dumping a pydantic model per job cost more than the rest of the job's own work."""
    first = parts[0]
    return {
        "id": first.batch_id,
        "rows": first.batch_rows,
        "padded_rows": first.padded_rows,
        "jobs": first.batch_jobs,
        "passes": len(parts),
    }


def record_job(task: str, job_id: str | None, model: str, outcome: str, elapsed_s: float) -> None:
    """One count and one log line of fixed shape per job, whichever path ran it."""
    metrics.job_done(task, model, outcome, elapsed_s)
    log.info(
        "job=%s task=%s model=%s outcome=%s elapsed_ms=%.1f",
        job_id,
        task,
        model,
        outcome,
        elapsed_s * 1000,
    )


def outcome_code(error: BaseException | None) -> str:
    """A job's outcome label: ``ok``, its InferqError's code, or ``internal_error`` for
    any other exception (a bug: Celery stores it, the count must not say ok)."""
    if error is None:
        return "ok"
    return str(error.info.get("code")) if isinstance(error, InferqError) else "internal_error"


def logged_job(task: Any, model: str, run: Callable[[], T]) -> T:
    """Run a job body and record it, whatever the outcome; exceptions are re-raised."""
    started = time.monotonic()
    error: Exception | None = None
    try:
        return run()
    except Exception as exc:
        error = exc
        raise
    finally:
        elapsed_s = time.monotonic() - started
        record_job(task.name, task.request.id, model, outcome_code(error), elapsed_s)


def predict_inputs(served: registry.ServedRegressor, rows: Any) -> np.ndarray:
    """A job's rows, validated and scaled: what the model takes (InvalidInput if bad)."""
    return served.meta.scale_features(served.validator.validate(rows)).astype(np.float32)


def predict_result(
    served: registry.ServedRegressor, parts: list[BatchOutput], started: float
) -> dict[str, Any]:
    """The PredictResult of a job whose rows ran in ``parts``."""
    outputs = parts[0].values if len(parts) == 1 else np.concatenate([p.values for p in parts])
    return {
        "earnings_usd": served.meta.to_dollars(outputs).tolist(),
        "model": {"name": served.name, "version": served.version},
        "batch": _batch(parts),
        "timings_ms": {
            "batch_wait_ms": round(sum(p.wait_ms for p in parts), 3),
            "inference_ms": round(sum(p.inference_ms for p in parts), 3),
            "total_ms": to_ms(time.monotonic() - started),
        },
    }


# Strategy: small jobs skip the pool thread and go from the consumer to the batch queue
# (worker.direct); this body runs the rest (big jobs, ETA, a prefork child).
@app.task(name=PREDICT_TASK, Strategy="worker.direct:strategy", **JOB_OPTIONS)
def predict_earnings(self: Any, rows: Any) -> dict[str, Any]:
    served = registry.regressor()

    def run() -> dict[str, Any]:
        started = time.monotonic()
        futures = served.runner.submit(predict_inputs(served, rows))
        parts = served.runner.wait(futures, served.timeout_s)
        return predict_result(served, parts, started)

    return logged_job(self, served.name, run)


@app.task(name=CLASSIFY_TASK, **JOB_OPTIONS)
def classify_image(
    self: Any, image_b64: Any = None, path: Any = None, top_k: Any = 5
) -> dict[str, Any]:
    served = registry.classifier()

    def run() -> dict[str, Any]:
        started = time.monotonic()
        k = _top_k(top_k)
        x = served.preprocess(load_image(image_b64, path, served.settings))[None]
        decoded = time.monotonic()
        probs, parts = served.runner.infer(x.astype(np.float32), served.timeout_s)
        return {  # ClassifyResult
            "labels": [dict(p) for p in served.labels.top_k(probs[0], k)],
            "model": {"name": served.name, "version": served.version},
            "batch": _batch(parts),
            "timings_ms": {
                "decode_ms": to_ms(decoded - started),
                "batch_wait_ms": round(parts[0].wait_ms, 3),
                "inference_ms": round(parts[0].inference_ms, 3),
                "total_ms": to_ms(time.monotonic() - started),
            },
        }

    return logged_job(self, served.name, run)


def _top_k(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        message = f"top_k must be an integer from 1 to 1000, not {value!r}"
        raise InvalidInput.single("top_k", "invalid_top_k", message)
    return value


@app.task(name=MODEL_INFO_TASK, throws=(InferqError,))
def regressor_info() -> dict[str, Any]:
    served = registry.regressor()
    meta = served.meta
    return RegressorInfo(
        model=ModelInfo(name=served.name, version=served.version),
        features=list(meta.features),
        target=meta.target,
        inputs=meta.inputs,
    ).model_dump()
