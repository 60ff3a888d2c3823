"""Small predict jobs go from the consumer straight to the batch queue.

On Celery's usual path every message gets a pool thread, which decodes the
body a second time, runs Celery's tracer and then only waits for its share of
a forward pass: per job, that costs the worker more than the job's own work
(README, Benchmarks). Here a predict_earnings job of at most one batch of rows,
in the process that holds the model, takes three steps instead:

* the consumer thread, after Celery's own strategy (revoked, expires, events,
  ETA, rate limits, reserved-request bookkeeping), validates the rows and puts
  them on the batch queue; a bad job is answered without a forward pass;
* the runner thread runs the forward pass; it only runs the model;
* the finisher thread (worker.finisher) stores the answers, then acks.

Everything else (big jobs, ETA and rate-limited jobs, a prefork parent that
has no model) takes the pool path and the same task body. On warm shutdown
``DrainDirectJobs`` answers every held job before the consumer's channels
close, so none is run twice.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from typing import Any

from celery import bootsteps
from celery.worker.strategy import default as default_strategy

from inferq.errors import InferenceFailed, InferqError, InvalidInput
from worker import registry
from worker.app import app
from worker.arguments import argument_errors
from worker.finisher import Finisher, Held
from worker.runner import BatchOutput
from worker.tasks import outcome_code, predict_inputs, predict_result, record_job

log = logging.getLogger("inferq.direct")


def _result(job: Held, part: BatchOutput) -> dict[str, Any]:
    return predict_result(registry.regressor(), [part], job.started)


def _record(job: Held) -> None:
    req = job.request
    elapsed_s = time.monotonic() - job.started
    outcome = outcome_code(job.error)
    record_job(req.name, req.id, registry.regressor().name, outcome, elapsed_s)


_finishers: list[Finisher] = []


def finisher() -> Finisher:
    """This process's one finisher, started on first use (by the consumer thread). Celery
    builds new strategies at every reconnect; they share it, so jobs held across a
    reconnect are answered and drained by the same thread, and no thread is left over."""
    if not _finishers:
        _finishers.append(Finisher(_result, _record))
    return _finishers[0]


class DirectPredict:
    """Celery's handler of new requests for one task: small jobs here, others to the pool."""

    def __init__(self, task: Any, pool_path: Any) -> None:
        self.pool_path = pool_path
        self.signature = inspect.signature(task.run)

    def __call__(self, req: Any) -> None:
        served = registry.regressor() if registry.holds("regressor") else None
        if served is None or not _small(req, served.runner.queue.max_rows):
            self.pool_path(req)
            return
        # Unused by a threads pool, but a malformed pair is refused here as on the pool
        # path: the consumer's guard (worker.refusal) answers the ValueError.
        _hard_s, _soft_s = req.time_limits
        started = time.monotonic()
        job = Held(req, started, started + served.timeout_s)
        # As a pool does: worker pid and start time (`inspect active`), the worker's
        # active-request bookkeeping, the task-started event.
        req.on_accepted(os.getpid(), started)
        finisher().hold(job)
        try:
            errors = argument_errors(self.signature, req.args, req.kwargs)
            if errors:
                raise InvalidInput.with_errors(f"{len(errors)} invalid argument(s)", errors)
            rows = self.signature.bind(*req.args, **req.kwargs).arguments["rows"]
            (job.future,) = served.runner.submit(predict_inputs(served, rows))
        except InferqError as exc:
            job.error = exc
        except Exception as exc:  # a bug: the job still gets one answer; the consumer lives on
            log.exception("job=%s: could not queue the job", req.id)
            job.error = InferenceFailed(f"{type(exc).__name__}: {exc}")
        if job.future is None:
            finisher().ready(job)
        else:
            job.future.add_done_callback(lambda _: finisher().ready(job))


def _small(req: Any, max_rows: int) -> bool:
    """At most one batch of rows (or no list at all: answered here, if only an error)."""
    rows = req.kwargs.get("rows", req.args[0] if req.args else None)
    return not isinstance(rows, list) or len(rows) <= max_rows


class _Routed:
    """The consumer, as Celery's strategy sees it, with another handler of new requests."""

    def __init__(self, consumer: Any, on_task_request: Any) -> None:
        self._consumer = consumer
        self.on_task_request = on_task_request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


def strategy(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Any:
    """Celery's default strategy, handing requests to DirectPredict instead of the pool."""
    direct = DirectPredict(task, consumer.on_task_request)
    return default_strategy(task, app, _Routed(consumer, direct), **kwargs)


def drain(timeout_s: float) -> int:
    """Answer every held job; the number left unanswered at ``timeout_s``."""
    return _finishers[0].drain(timeout_s) if _finishers else 0


class DrainDirectJobs(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer step: on warm shutdown, held jobs are answered and acked before Tasks
    closes the channels (which would put them back in the queue, to run again)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def stop(self, c: Any) -> None:
        # CLOSE: the worker is stopping. A reconnect stops the steps too, in state RUN;
        # then held jobs finish on their own.
        if c.blueprint.state != bootsteps.CLOSE or not registry.holds("regressor"):
            return
        left = drain(registry.regressor().timeout_s)
        if left:
            log.warning("shutdown: %d held jobs unanswered; they go back to the queue", left)


app.steps["consumer"].add(DrainDirectJobs)
