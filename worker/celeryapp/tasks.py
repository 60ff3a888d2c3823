"""The Celery tasks of the job contract (docs/contract.md), registered on the app.

Each task finds its model in the process's WorkerState, runs its job body
(worker.jobs) and returns the result or raises a typed InferqError; Celery stores
either before acking (acks_late). Small predict jobs do not reach these bodies: the
direct path (worker.celeryapp.direct) runs the same job pieces without a pool thread.
A task's Python signature must match its payload model in the contract, field for
field: ``register`` refuses to start otherwise, so the published schema, the
argument checks and the code cannot drift apart.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Celery, Task
from pydantic import BaseModel

from inferq.core.constants import (
    CLASSIFIER_INFO_TASK,
    CLASSIFY_CHUNK_TASK,
    CLASSIFY_TASK,
    MODEL_INFO_TASK,
    PREDICT_TASK,
    SCORE_CHUNK_TASK,
)
from inferq.core.contract import (
    ClassifierInfoPayload,
    ClassifyChunkPayload,
    ClassifyPayload,
    PredictPayload,
    RegressorInfoPayload,
    ScoreChunkPayload,
)
from inferq.errors import InferqError, ModelUnavailable
from worker.celeryapp.direct import DirectPredict
from worker.celeryapp.direct_images import DirectClassify, DirectClassifyChunk
from worker.celeryapp.finisher import outcome_code
from worker.celeryapp.state import WorkerState
from worker.jobs import classify, predict, score_chunk

T = TypeVar("T")

# resultrepr_maxsize: Celery repr()s every result for its log line and task event; a
# short repr costs a third of a full one and keeps predictions out of logs.
JOB_OPTIONS: dict[str, Any] = {"bind": True, "throws": (InferqError,), "resultrepr_maxsize": 48}


def _state(task: Task) -> WorkerState:
    state: WorkerState | None = task.app.state
    if state is None:
        raise ModelUnavailable("this process is not a started inferq worker")
    return state


def logged_job(task: Task, model: str, run: Callable[[], T]) -> T:
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
        code = outcome_code(error)
        _state(task).record_job(task.name, task.request.id, model, code, elapsed_s)


def predict_earnings(self: Task, rows: Any) -> dict[str, Any]:
    served = _state(self).models.regressor()
    return logged_job(self, served.name, lambda: predict.run(served, rows))


def classify_image(
    self: Task, image_b64: Any = None, path: Any = None, top_k: Any = 5
) -> dict[str, Any]:
    state = _state(self)
    served, budget = state.models.classifier(), state.decode_budget
    return logged_job(
        self, served.name, lambda: classify.run(served, image_b64, path, top_k, budget)
    )


def classify_images(
    self: Task, images: Any, top_k: Any = 5, model_version: Any = None
) -> dict[str, Any]:
    state = _state(self)
    served, budget = state.models.classifier(), state.decode_budget
    read = state.read_blob

    def run() -> dict[str, Any]:
        return classify.run_chunk(served, images, top_k, budget, read, model_version)

    return logged_job(self, served.name, run)


def classifier_info(self: Task) -> dict[str, Any]:
    return classify.info(_state(self).models.classifier())


def score_chunk_task(
    self: Task,
    chunk_id: Any,
    features: Any,
    rows: Any,
    data: Any,
    compression: Any = None,
    model_version: Any = None,
) -> dict[str, Any]:
    served = _state(self).models.regressor()

    def run() -> dict[str, Any]:
        return score_chunk.run(served, chunk_id, features, rows, data, compression, model_version)

    return logged_job(self, served.name, run)


def regressor_info(self: Task) -> dict[str, Any]:
    return predict.info(_state(self).models.regressor())


def register(app: Celery) -> None:
    """Register the contract's tasks on ``app``."""
    # Strategy: small jobs and images skip the pool thread and go from the consumer to
    # the batch queue (worker.celeryapp.direct, direct_images: each task's direct_path);
    # the body runs the rest (big jobs, ETA, prefork).
    direct = {"Strategy": "worker.celeryapp.direct:strategy"}
    _register(
        app, PREDICT_TASK, PredictPayload, predict_earnings, direct_path=DirectPredict, **direct
    )
    _register(
        app, CLASSIFY_TASK, ClassifyPayload, classify_image, direct_path=DirectClassify, **direct
    )
    _register(
        app, CLASSIFY_CHUNK_TASK, ClassifyChunkPayload, classify_images,
        direct_path=DirectClassifyChunk, **direct,
    )  # fmt: skip
    _register(app, SCORE_CHUNK_TASK, ScoreChunkPayload, score_chunk_task)
    _register(app, MODEL_INFO_TASK, RegressorInfoPayload, regressor_info)
    _register(app, CLASSIFIER_INFO_TASK, ClassifierInfoPayload, classifier_info)


def _register(
    app: Celery, name: str, payload: type[BaseModel], body: Callable[..., Any], **options: Any
) -> None:
    params = list(inspect.signature(body).parameters.values())[1:]  # after the bound task
    takes = [(p.name, p.default is inspect.Parameter.empty) for p in params]
    fields = [(n, info.is_required()) for n, info in payload.model_fields.items()]
    if takes != fields:
        raise TypeError(f"task {name} takes {takes}; its payload model has {fields}")
    # payload: the task class checks each job's arguments against it (InferqTask).
    app.task(name=name, payload=payload, **JOB_OPTIONS, **options)(body)
