"""A small client over Celery for services that send jobs to inferq workers.

It builds its own Celery app from the same Settings as the workers and never
imports the worker package (so never TensorFlow).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult, ResultSet

from inferq.celery_config import celery_config
from inferq.constants import MODEL_INFO_TASK, PREDICT_TASK
from inferq.contract import PredictResult, RegressorInfo
from inferq.errors import InferqError, JobTimeout
from inferq.procutil import Managed
from inferq.settings import Settings

Rows = dict[str, Any] | list[dict[str, Any]]


@dataclass
class Handle:
    """One submitted job: its id, and the time it was sent (monotonic)."""

    id: str
    rows: int
    sent_at: float
    _result: AsyncResult = field(repr=False)

    def wait(self, timeout_s: float = 30.0) -> PredictResult:
        """The job's result, or its typed error raised (JobTimeout if none came in time)."""
        try:
            value = self._result.get(timeout=timeout_s, propagate=False)
        except CeleryTimeout:
            raise JobTimeout(f"job {self.id}: no result within {timeout_s} s") from None
        return outcome(self._result.state, value)


def _count(rows: Rows) -> int:
    return len(rows) if isinstance(rows, list) else 1


def outcome(state: str, value: Any) -> PredictResult:
    if state == "SUCCESS":
        return PredictResult.model_validate(value)
    raise failure(state, value)


def failure(state: str, value: Any) -> InferqError:
    """The typed error of a failed job; errors Celery raised itself become `worker_error`."""
    if isinstance(value, InferqError):
        return value
    return InferqError({"code": "worker_error", "message": f"{state}: {value!r}"})


class Client(Managed):
    def __init__(self, settings: Settings | None = None, *, queue: str | None = None) -> None:
        self.settings = settings or Settings.load()
        self.queue = queue or self.settings.regression_queue
        self.app = Celery("inferq-producer", set_as_current=False)
        self.app.conf.update(celery_config(self.settings))

    def submit(self, rows: Rows, *, expires_s: float | None = None) -> Handle:
        """Send one job of one row (a dict) or many rows (a list of dicts)."""
        sent_at = time.monotonic()
        result = self.app.send_task(
            PREDICT_TASK,
            kwargs={"rows": rows},
            queue=self.queue,
            expires=expires_s,
            # Celery would otherwise repr() the rows into every message header: slow, and
            # it copies payload data into logs and events.
            argsrepr="()",
            kwargsrepr=f"{{rows: {_count(rows)}}}",
        )
        return Handle(result.id, _count(rows), sent_at, result)

    def regressor_info(self, timeout_s: float = 30.0) -> RegressorInfo:
        """What the serving regressor expects (features, version), asked of a worker."""
        result = self.app.send_task(MODEL_INFO_TASK, queue=self.queue)
        try:
            value = result.get(timeout=timeout_s, propagate=False)
        except CeleryTimeout:
            raise JobTimeout(f"no regression worker answered within {timeout_s} s") from None
        if result.state != "SUCCESS":
            raise failure(result.state, value)
        return RegressorInfo.model_validate(value)

    def predict(self, rows: Rows, timeout_s: float = 30.0) -> PredictResult:
        return self.submit(rows).wait(timeout_s)

    def as_completed(
        self, handles: Iterable[Handle], timeout_s: float = 60.0
    ) -> Iterator[tuple[Handle, PredictResult | InferqError]]:
        """Each handle with its result or error, in the order they finish."""
        by_id = {h.id: h for h in handles}
        if not by_id:
            return
        results = ResultSet([h._result for h in by_id.values()], app=self.app)
        try:
            for task_id, meta in results.iter_native(timeout=timeout_s):
                try:
                    yield by_id[task_id], outcome(meta["status"], meta["result"])
                except InferqError as exc:
                    yield by_id[task_id], exc
        except CeleryTimeout:
            raise JobTimeout(f"not every job finished within {timeout_s} s") from None

    def close(self) -> None:
        self.app.close()
