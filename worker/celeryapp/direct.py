"""Small predict jobs go from the consumer straight to the batch queue.

On Celery's usual path every message gets a pool thread, which decodes the
body a second time, runs Celery's tracer and then only waits for its share of
a forward pass: per job, that costs the worker more than the job's own work
(docs/benchmarks.md). Here a predict_earnings job of at most one batch of rows,
in the process that holds the model, takes three steps instead:

* the consumer thread, after Celery's own strategy (revoked, expires, events,
  ETA, rate limits, reserved-request bookkeeping), validates the rows and puts
  them on the batch queue; a bad job is answered without a forward pass;
* the runner thread runs the forward pass; it only runs the model;
* the finisher thread (worker.celeryapp.finisher) stores the answers, then acks.

Everything else (big jobs, ETA and rate-limited jobs, a prefork parent that
has no model) takes the pool path and the same job body. On warm shutdown
``DrainDirectJobs`` answers every held job before the consumer's channels
close, so none is run twice.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any

from celery import bootsteps
from celery.worker.strategy import default as default_strategy

from inferq.core.contract import PredictPayload
from inferq.errors import InferenceFailed, InferqError
from worker.celeryapp.finisher import HeldJob
from worker.celeryapp.state import WorkerState
from worker.jobs import predict
from worker.jobs.checks import bind_arguments

log = logging.getLogger("inferq.direct")


class DirectPredict:
    """Celery's handler of new requests for one task: small jobs here, others to the pool."""

    def __init__(self, state: WorkerState | None, pool_path: Any) -> None:
        self.state = state
        self.pool_path = pool_path

    def __call__(self, req: Any) -> None:
        state = self.state
        if state is None or not state.models.holds("regressor"):
            self.pool_path(req)  # a prefork parent: its children hold the model
            return
        served = state.models.regressor()
        if not _small(req, served.runner.queue.max_rows):
            self.pool_path(req)
            return
        # Unused by a threads pool, but a malformed pair is refused here as on the pool
        # path: the consumer's guard (worker.celeryapp.refusal) answers the ValueError.
        _hard_s, _soft_s = req.time_limits
        started = time.monotonic()
        job = HeldJob(req, served.name, started, started + served.timeout_s)
        job.make_result = functools.partial(_one_pass_result, served, started)
        # As a pool does: worker pid and start time (`inspect active`), the worker's
        # active-request bookkeeping, the task-started event.
        req.on_accepted(os.getpid(), started)
        finisher = state.finisher()
        finisher.hold(job)
        try:
            rows = bind_arguments(PredictPayload, req.args, req.kwargs)["rows"]
            (job.future,) = served.runner.submit(predict.inputs(served, rows))
        except InferqError as exc:
            job.error = exc
        except Exception as exc:  # a bug: the job still gets one answer; the consumer lives on
            log.exception("job=%s: could not queue the job", req.id)
            job.error = InferenceFailed(f"{type(exc).__name__}: {exc}")
        if job.future is None:
            finisher.ready(job)
        else:
            job.future.add_done_callback(lambda _: finisher.ready(job))


def _one_pass_result(served: Any, started: float, part: Any) -> dict[str, Any]:
    return predict.result(served, [part], started)


def _small(req: Any, max_rows: int) -> bool:
    """At most one batch of rows (or no list at all: answered here, if only an error)."""
    rows = req.kwargs.get("rows", req.args[0] if req.args else None)
    return not isinstance(rows, list) or len(rows) <= max_rows


class _ConsumerView:
    """The consumer, as Celery's strategy sees it, with another handler of new requests."""

    def __init__(self, consumer: Any, on_task_request: Any) -> None:
        self._consumer = consumer
        self.on_task_request = on_task_request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


def strategy(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Any:
    """Celery's default strategy, handing requests to DirectPredict instead of the pool."""
    direct = DirectPredict(app.state, consumer.on_task_request)
    return default_strategy(task, app, _ConsumerView(consumer, direct), **kwargs)


class DrainDirectJobs(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer step: on warm shutdown, held jobs are answered and acked before Tasks
    closes the channels (which would put them back in the queue, to run again)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def stop(self, c: Any) -> None:
        # CLOSE: the worker is stopping. A reconnect stops the steps too, in state RUN;
        # then held jobs finish on their own.
        state = c.app.state
        if c.blueprint.state != bootsteps.CLOSE or state is None:
            return
        left = state.drain(state.settings.inference_timeout_s)
        if left:
            log.warning("shutdown: %d held jobs unanswered; they go back to the queue", left)
