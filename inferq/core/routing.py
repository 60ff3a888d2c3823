"""Queues, tasks and models: which task goes to which queue, and which model a queue needs.

The one definition of both maps. ``regression`` and ``vision`` are the logical queues
(what ``inferq worker --queues`` takes); their Redis lists are named by
``INFERQ_REGRESSION_QUEUE`` and ``INFERQ_VISION_QUEUE``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Final

from inferq.core.constants import (
    CLASSIFIER_INFO_TASK,
    CLASSIFY_CHUNK_TASK,
    CLASSIFY_TASK,
    MODEL_INFO_TASK,
    PREDICT_TASK,
    SCORE_CHUNK_TASK,
)
from inferq.core.settings import Settings

# Logical queue -> the kind of model a worker consuming it loads.
QUEUE_MODELS: Final = {"regression": "regressor", "vision": "classifier"}
# Task -> its logical queue.
TASK_QUEUES: Final = {
    PREDICT_TASK: "regression",
    MODEL_INFO_TASK: "regression",
    SCORE_CHUNK_TASK: "regression",
    CLASSIFY_TASK: "vision",
    CLASSIFY_CHUNK_TASK: "vision",
    CLASSIFIER_INFO_TASK: "vision",
}


def redis_queue(logical: str, settings: Settings) -> str:
    """The Redis list of a logical queue."""
    return {"regression": settings.regression_queue, "vision": settings.vision_queue}[logical]


def queue_names(logical: Sequence[str], settings: Settings) -> list[str]:
    """Logical queue names to their Redis lists; ValueError naming an unknown one."""
    unknown = [q for q in logical if q not in QUEUE_MODELS]
    if unknown:
        raise ValueError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUE_MODELS)}")
    return [redis_queue(q, settings) for q in logical]


def models_for(consumed: Collection[str], settings: Settings) -> set[str]:
    """The model kinds a worker needs for the Redis lists it consumes (and only those)."""
    return {kind for q, kind in QUEUE_MODELS.items() if redis_queue(q, settings) in consumed}


def task_routes(settings: Settings) -> dict[str, dict[str, str]]:
    """Celery's ``task_routes``: each task to its Redis list."""
    return {task: {"queue": redis_queue(q, settings)} for task, q in TASK_QUEUES.items()}
