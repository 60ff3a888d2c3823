"""The finisher: one thread that answers the jobs of worker.celeryapp.direct.

The runner thread only runs the model; when a forward pass ends it hands the
batch's jobs to this thread, which stores every job's result or typed error
and only then acks its message. Results ready together are stored together
(worker.celeryapp.results: two round trips for the lot), and acked together
(worker.celeryapp.acks: one). A job whose answer cannot be
stored is tried again a few times, waits doubling, and then goes back to the queue
instead of being acked (not at once: an answer Redis keeps refusing must not send its
job round the queue in a hot loop). A job with no forward
pass within its deadline gets InferenceFailed, as on the pool path, and a
forward pass that ends after that is ignored: one answer per job. A job whose
forward pass has ended is answered with its outputs, however late the finisher
gets to it (a slow store of an earlier batch, a stalled Redis): the deadline is
about the forward pass, not about Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Any

from celery.utils.saferepr import saferepr
from celery.worker.state import task_ready

from inferq.errors import InferenceFailed, InferqError
from worker.celeryapp.acks import ack_together
from worker.celeryapp.results import fast_path, store_done

log = logging.getLogger("inferq.finisher")

SWEEP_S = 1.0  # how often held jobs are checked against their deadline
MAX_GROUP = 256  # jobs answered together, at most
STORE_RETRY_WAITS_S = (0.5, 1.0, 2.0)  # then the job goes back to the queue


def outcome_code(error: BaseException | None) -> str:
    """A job's outcome label: ``ok``, its InferqError's code, or ``internal_error`` for
    any other exception (a bug: it is stored all the same, the count must not say ok)."""
    if error is None:
        return "ok"
    return str(error.info.get("code")) if isinstance(error, InferqError) else "internal_error"


# What a finished forward pass makes of a job: its result (the job's own code). The
# future's value: a BatchOutput, or a chunk's list of outputs and per-image errors.
MakeResult = Callable[[Any], dict[str, Any]]


@dataclass(eq=False)  # by identity: one message id may be held twice (a redelivery)
class HeldJob:
    """A job between the consumer and its stored answer."""

    request: Any  # celery.worker.request.Request
    model: str  # the served model's name, for the count and the log line
    started: float
    deadline: float
    make_result: MakeResult | None = field(default=None, repr=False)
    future: Future[Any] | None = None
    error: BaseException | None = None
    result: dict[str, Any] | None = field(default=None, repr=False)
    overdue_s: float | None = None  # set by the deadline sweep: waited this long, no pass
    store_failures: int = 0

    def outcome(self) -> str:
        return outcome_code(self.error)

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


# Called once per answered job, after its ack: metrics and the log line.
Record = Callable[[HeldJob], None]


class Finisher:
    def __init__(self, record: Record) -> None:
        self._record = record
        self._ready: SimpleQueue[HeldJob] = SimpleQueue()
        self._held: set[HeldJob] = set()
        self._retries: list[tuple[float, HeldJob]] = []  # (when, job): stores to try again
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="inferq-finisher", daemon=True)
        self._thread.start()

    def hold(self, job: HeldJob) -> None:
        with self._cond:
            self._held.add(job)

    def ready(self, job: HeldJob) -> None:
        """Answer ``job`` soon; safe from any thread (the runner calls it)."""
        self._ready.put(job)

    def drain(self, timeout_s: float) -> int:
        """Wait until every held job is answered; the number still held at ``timeout_s``."""
        with self._cond:
            self._cond.wait_for(lambda: not self._held, timeout_s)
            return len(self._held)

    def _loop(self) -> None:
        next_sweep = time.monotonic() + SWEEP_S
        while True:
            try:
                self._answer(self._take())
                self._answer(self._due_retries())
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_S
                    self._answer(self._overdue())
            except Exception:  # the thread must outlive any one batch, or sweep
                log.exception("could not answer jobs")

    def _take(self) -> list[HeldJob]:
        try:
            jobs = [self._ready.get(timeout=SWEEP_S)]
        except Empty:
            return []
        while len(jobs) < MAX_GROUP:
            try:
                jobs.append(self._ready.get_nowait())
            except Empty:
                break
        return jobs

    def _overdue(self) -> list[HeldJob]:
        """Jobs past their deadline with no forward pass ended (those whose pass ended are
        on their way here through ``ready``, and are answered with their outputs)."""
        now = time.monotonic()
        with self._cond:
            overdue = [
                job
                for job in self._held
                if job.deadline <= now and not (job.future is not None and job.future.done())
            ]
        for job in overdue:
            job.overdue_s = round(now - job.started, 1)
        return overdue

    def _due_retries(self) -> list[HeldJob]:
        now = time.monotonic()
        due = [job for when, job in self._retries if when <= now]
        self._retries = [(when, job) for when, job in self._retries if when > now]
        return due

    def _answer(self, jobs: list[HeldJob]) -> None:
        with self._cond:
            jobs = [job for job in dict.fromkeys(jobs) if job in self._held]
        later: list[HeldJob] = []
        try:
            for job in jobs:
                self._settle(job)
            stored = _store_fast(jobs)
            answered = []
            for job in jobs:
                try:
                    if job in stored or _store_one(job):
                        answered.append(job)
                    elif self._try_later(job):
                        later.append(job)
                except Exception:  # one job's store must not cost the others theirs
                    log.exception("job=%s: answered, but not finished", job.request.id)
            self._finish(answered)
        finally:
            with self._cond:
                self._held.difference_update(set(jobs) - set(later))
                if not self._held:
                    self._cond.notify_all()

    def _finish(self, jobs: list[HeldJob]) -> None:
        """After their answers are stored: the worker's bookkeeping, the acks (together,
        worker.celeryapp.acks), the task events, the metrics and log lines."""
        for job in jobs:
            task_ready(job.request, successful=job.error is None)
        try:
            ack_together(job.request for job in jobs)
        except Exception:  # a bug there must not leave a stored job unacked
            log.exception("acking %d jobs together failed; acking one by one", len(jobs))
            for job in jobs:
                _ack_alone(job)
        for job in jobs:
            try:
                _send_event(job)
                self._record(job)
            except Exception:  # one job's event must not cost the others theirs
                log.exception("job=%s: answered, but not finished", job.request.id)

    def _try_later(self, job: HeldJob) -> bool:
        """After a failed store: True if the job is to be stored again later (it stays
        held, unacked); False once it went back to the queue."""
        req = job.request
        if job.store_failures < len(STORE_RETRY_WAITS_S):
            wait_s = STORE_RETRY_WAITS_S[job.store_failures]
            job.store_failures += 1
            self._retries.append((time.monotonic() + wait_s, job))
            log.warning("job=%s: answer not stored; trying again in %.1f s", req.id, wait_s)
            return True
        log.error("job=%s: answer still not stored; the job goes back to the queue", req.id)
        task_ready(req)
        req.reject(requeue=True)
        return False

    def _settle(self, job: HeldJob) -> None:
        """Turn the job's forward pass (or its error) into ``result`` or ``error``. A pass
        that ended wins over the sweep's verdict: the outputs are there, so they count."""
        if job.error is not None or job.result is not None:
            return
        assert job.future is not None and job.make_result is not None
        if not job.future.done():
            job.error = InferenceFailed(f"no forward pass within {job.overdue_s} s")
            return
        try:
            job.result = job.make_result(job.future.result(timeout=0))
        except Exception as exc:  # InferenceFailed from the runner, or a bug making the result
            job.error = exc


def _store_fast(jobs: list[HeldJob]) -> set[HeldJob]:
    """Store the plain successes together; the set of jobs stored."""
    fast = [
        job
        for job in jobs
        if job.error is None and fast_path(job.request.task.backend, job.request)
    ]
    if not fast:
        return set()
    try:
        store_done(fast[0].request.task.backend, [(job.request, job.result) for job in fast])
    except Exception as exc:  # each goes again through mark_as_done, with Celery's retries
        log.warning("storing %d results together failed (%s); storing one by one", len(fast), exc)
        return set()
    return set(fast)


def _store_one(job: HeldJob) -> bool:
    """Store one job's answer; False if it cannot be (after Celery's own retries)."""
    req = job.request
    try:
        if job.error is None:
            req.task.backend.mark_as_done(req.id, job.result, request=req._context)
        else:
            req.task.backend.mark_as_failure(req.id, job.error, request=req._context)
    except Exception as exc:
        log.warning("job=%s: storing its answer failed: %s: %s", req.id, type(exc).__name__, exc)
        return False
    return True


def _ack_alone(job: HeldJob) -> None:
    try:
        job.request.acknowledge()  # does nothing if acked already
    except Exception:
        log.exception("job=%s: could not be acked", job.request.id)


def _send_event(job: HeldJob) -> None:
    """The task-succeeded or task-failed event a pool thread would send."""
    req = job.request
    if _sends_task_events(req.eventer):
        if job.error is None:
            runtime_s = time.monotonic() - job.started
            req.send_event("task-succeeded", result=saferepr(job.result, 48), runtime=runtime_s)
        else:
            req.send_event("task-failed", exception=saferepr(job.error))


def _sends_task_events(eventer: Any) -> bool:
    """Whether the dispatcher sends task events now: Celery's own test in
    ``EventDispatcher.send`` (enabled, and the ``task`` group among its groups, or no
    groups at all), made before the event's repr is built (a tenth of the finisher's
    time) rather than after. ``enable_events`` / ``disable_events`` change the groups."""
    if eventer is None or not eventer.enabled:
        return False
    groups = eventer.groups
    return not groups or "task" in groups
