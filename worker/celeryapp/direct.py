"""Small predict jobs go from the consumer straight to the batch queue (images: through
the decode stage, worker.celeryapp.direct_images).

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
has no model, and any job that asks Celery's tracer for more than storing its
answer: ``link``, ``link_error``, a chain or a chord; see ``needs_tracer``) takes
the pool path and the same job body. On warm shutdown
``DrainDirectJobs`` answers every held job before the consumer's channels
close, so none is run twice.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from concurrent.futures import Future
from typing import Any

from celery import bootsteps
from celery.worker.strategy import default as default_strategy

from inferq.core.contract import PredictPayload
from inferq.errors import InferenceFailed, InferqError
from worker.celeryapp.finisher import Finisher, HeldJob
from worker.celeryapp.state import WorkerState
from worker.jobs import predict
from worker.jobs.checks import bind_arguments

log = logging.getLogger("inferq.direct")


class DirectPath:
    """Celery's handler of new requests for one task: jobs it ``takes`` are held here and
    answered by the finisher; the others go to the pool."""

    kind = ""  # the model kind the task needs

    def __init__(self, state: WorkerState | None, pool_path: Any) -> None:
        self.state = state
        self.pool_path = pool_path

    def __call__(self, req: Any) -> None:
        state = self.state
        if (
            state is None
            or not state.models.holds(self.kind)
            or needs_tracer(req)
            or not self.takes(req, state)
        ):
            self.pool_path(req)  # e.g. a prefork parent: its children hold the model
            return
        # Unused by a threads pool, but a malformed pair is refused here as on the pool
        # path: the consumer's guard (worker.celeryapp.refusal) answers the ValueError.
        _hard_s, _soft_s = req.time_limits
        started = time.monotonic()
        job = HeldJob(req, self.model_name(state), started, math.inf)
        # As a pool does: worker pid and start time (`inspect active`), the worker's
        # active-request bookkeeping, the task-started event.
        req.on_accepted(os.getpid(), started)
        finisher = state.finisher()
        finisher.hold(job)
        try:
            self.start(job, state, finisher)
        except Exception as exc:
            fail(job, finisher, exc)

    def takes(self, req: Any, state: WorkerState) -> bool:
        return True

    def model_name(self, state: WorkerState) -> str:
        raise NotImplementedError

    def start(self, job: HeldJob, state: WorkerState, finisher: Finisher) -> None:
        """Set the job on its way: ``job.future`` (and the finisher told when it is done),
        or raise an InferqError for the job's answer."""
        raise NotImplementedError


# What a message's embed may carry that Celery's tracer acts on after the body: link
# callbacks and the chain's next step (sent with the result as first argument, before
# the result is stored), link_error callbacks, and the chord whose counter the job
# moves. The finisher only stores and acks, so a job carrying any of them takes the
# pool path, where Celery's own tracer does all of it: one implementation of the
# canvas, Celery's, rather than a copy to keep in step with every Celery release.
CANVAS_KEYS = ("callbacks", "errbacks", "chain", "chord")


def needs_tracer(req: Any) -> bool:
    """Whether the job carries canvas work (``CANVAS_KEYS``) only Celery's tracer does."""
    _args, _kwargs, embed = req._payload  # Celery's decoded (args, kwargs, embed)
    return bool(embed) and any(embed.get(key) for key in CANVAS_KEYS)


def fail(job: HeldJob, finisher: Finisher, exc: BaseException) -> None:
    """Answer a held job with ``exc``: its own typed error, or (a bug) InferenceFailed."""
    if not isinstance(exc, InferqError):
        log.error("job=%s: could not queue the job", job.request.id, exc_info=exc)
        exc = InferenceFailed(f"{type(exc).__name__}: {exc}")
    job.error = exc
    finisher.ready(job)


def answer_when_done(
    job: HeldJob, finisher: Finisher, future: Future[Any], timeout_s: float
) -> None:
    """The job waits for ``future`` from now on, for ``timeout_s`` at most (the deadline is
    about the forward pass, not the time the job spent before it was queued)."""
    job.deadline = time.monotonic() + timeout_s
    job.future = future
    future.add_done_callback(lambda _: finisher.ready(job))


class DirectPredict(DirectPath):
    """Small predict jobs: validated and queued on the consumer thread itself."""

    kind = "regressor"

    def takes(self, req: Any, state: WorkerState) -> bool:
        return _small(req, state.models.regressor().runner.queue.max_rows)

    def model_name(self, state: WorkerState) -> str:
        return state.models.regressor().name

    def start(self, job: HeldJob, state: WorkerState, finisher: Finisher) -> None:
        served = state.models.regressor()
        job.make_result = functools.partial(_one_pass_result, served, job.started)
        req = job.request
        rows = bind_arguments(PredictPayload, req.args, req.kwargs)["rows"]
        (future,) = served.runner.submit(predict.inputs(served, rows))
        answer_when_done(job, finisher, future, served.timeout_s)


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
    """Celery's default strategy, handing requests to the task's direct path instead of
    the pool (``direct_path``: set on the task at registration)."""
    direct = task.direct_path(app.state, consumer.on_task_request)
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
