"""Job messages no well-behaved producer sends: raw envelopes and a booby-trapped pickle."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from celery import Celery
from celery.result import AsyncResult


class TrapPickle:
    """Unpickling this creates ``marker``: proof that a worker ran a pickle's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def send_pickle(app: Celery, task: str, kwargs: dict[str, Any], queue: str) -> AsyncResult:
    """A job in Celery's own pickle format: refused by JSON-only workers."""
    return app.send_task(task, kwargs=kwargs, queue=queue, serializer="pickle")


def send_raw(
    app: Celery,
    queue: str,
    task: str,
    body: bytes,
    *,
    content_type: str = "application/json",
    headers: dict[str, Any] | None = None,
) -> AsyncResult:
    """A protocol-2 envelope around ``body`` exactly as given (no serializer runs)."""
    task_id = str(uuid.uuid4())
    with app.producer_or_acquire() as producer:
        producer.publish(
            body,
            routing_key=queue,
            exchange="",
            content_type=content_type,
            content_encoding="utf-8",
            headers={"id": task_id, "task": task, "lang": "py", **(headers or {})},
            serializer=None,
        )
    return app.AsyncResult(task_id)


def real_envelope(client: Any, store: Any, task: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A real job's envelope as kombu writes it to Redis: sent to a scratch queue nobody
    reads, popped back, decoded. (``client``: a producer Client; ``store``: redis.Redis.)"""
    scratch = f"scratch-{uuid.uuid4().hex[:8]}"
    client.app.send_task(task, kwargs=kwargs, queue=scratch)
    raw = store.rpop(scratch)
    assert isinstance(raw, bytes), "the scratch queue was empty"
    envelope: dict[str, Any] = json.loads(raw)
    return envelope
