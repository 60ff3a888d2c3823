"""A submitted job: its handle, how long to wait for it, and its typed outcome."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from celery.exceptions import NotRegistered, TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult
from pydantic import BaseModel

from inferq.errors import InferqError, JobExpired, JobRevoked, JobTimeout, UnknownTask
from producer.broker_watch import BrokerWatch

R = TypeVar("R", bound=BaseModel)

# While waiting, stored results are also read back at least this often. Celery's result
# consumer (5.7) can miss a result across a Redis restart: on reconnecting it reads the
# stored states, then subscribes again, and a result stored in between is announced to
# nobody; the caller then waited out its whole timeout for a result that was there.
RESULT_POLL_S = 1.0
# After the broker came back (producer.broker_watch), the second of the two presence
# rounds a resend needs comes this soon after the first, not a resend interval later.
RECHECK_AFTER_S = 2.0


@dataclass
class Schedule:
    """A wait for results: when to give up, when to resend, how long the next slice is."""

    deadline: float
    resend_after_s: float | None
    resend_at: float | None
    quick_rounds: int = 0  # rounds left RECHECK_AFTER_S apart (the broker came back)

    @classmethod
    def start(cls, timeout_s: float, resend_after_s: float | None) -> Schedule:
        now = time.monotonic()
        resend_at = None if resend_after_s is None else now + resend_after_s
        return cls(now + timeout_s, resend_after_s, resend_at)

    def recheck_now(self) -> None:
        """The broker came back: a resend round now and one RECHECK_AFTER_S later (a job
        missing at both is lost), then the usual interval. Only where resends are on."""
        if self.resend_after_s is not None:
            self.resend_at, self.quick_rounds = time.monotonic(), 2

    def next_wait_s(self) -> float | None:
        """How long to wait for results now (a slice); None once the deadline has passed."""
        now = time.monotonic()
        if now >= self.deadline:
            return None
        until = min(self.deadline, self.resend_at or self.deadline, now + RESULT_POLL_S)
        return max(until - now, 0.001)

    def resend_due(self) -> bool:
        now = time.monotonic()
        if self.resend_at is None or self.resend_after_s is None or now < self.resend_at:
            return False
        self.quick_rounds = max(self.quick_rounds - 1, 0)
        self.resend_at = now + (RECHECK_AFTER_S if self.quick_rounds else self.resend_after_s)
        return True


@dataclass
class Handle(Generic[R]):
    """One submitted job: its id, its size, and the time it was sent (monotonic)."""

    id: str
    rows: int
    sent_at: float
    _result: AsyncResult = field(repr=False)
    _parse: type[R] = field(repr=False)
    _send_again: Callable[[], object] | None = field(default=None, repr=False)
    queue: str | None = None  # the queue it was sent to
    # Whether Redis still holds it (queued, or unacked by a live worker): then it is not lost.
    _held: Callable[[], bool] | None = field(default=None, repr=False)
    _suspect: bool = field(default=False, repr=False)  # missing at the last look
    # The broker's generation when it was sent: a later one means Redis restarted or
    # failed over since, and what it held for this job may be gone (producer.broker_watch).
    _broker: BrokerWatch | None = field(default=None, repr=False)
    _generation: int = field(default=0, repr=False)

    def broker_came_back(self) -> bool:
        """Whether the broker restarted or failed over since this job was sent (or since
        the last call that said so)."""
        if self._broker is None:
            return False
        generation = self._broker.look()
        came_back, self._generation = generation != self._generation, generation
        return came_back

    def resend(self) -> None:
        """Send the same job again, with the same id: its result key stays one, so a job
        that was lost (docs/delivery.md) ends with one result."""
        if self._send_again is None:
            raise RuntimeError(f"job {self.id} cannot be resent from this handle")
        self._send_again()

    def resend_if_lost(self) -> bool:
        """Resend the job if Redis held it neither now nor at the last call and its result
        is not stored; whether it was resent. (Missing once is a job on its normal way,
        popped and not yet recorded as unacked; missing twice is lost.)"""
        missing = not (self._held is not None and self._held())
        missing = missing and self._result.state == "PENDING"  # not answered meanwhile
        lost, self._suspect = missing and self._suspect, missing
        if lost:
            self.resend()
        return lost

    def forget(self) -> None:
        """Drop the stored result (once it is safely written elsewhere)."""
        self._result.forget()

    def wait(self, timeout_s: float = 30.0, *, resend_after_s: float | None = None) -> R:
        """The job's result, or its typed error raised (JobTimeout if none came in time).

        With ``resend_after_s``, the job is sent again (same id) each time that long
        passes without a result while Redis no longer holds it, until ``timeout_s``: as
        in ``Client.as_completed``."""
        schedule = Schedule.start(timeout_s, resend_after_s)
        while (wait_s := schedule.next_wait_s()) is not None:
            try:
                # Each get() reads the stored state first, then listens for a slice.
                value = self._result.get(timeout=wait_s, propagate=False)
            except CeleryTimeout:
                if resend_after_s is not None and self.broker_came_back():
                    schedule.recheck_now()
                if schedule.resend_due():
                    self.resend_if_lost()
                continue
            return self.outcome(self._result.state, value)
        raise JobTimeout(f"job {self.id}: no result within {timeout_s} s")

    def outcome(self, state: str, value: Any) -> R:
        if state == "SUCCESS":
            return self._parse.model_validate(value)
        raise failure(state, value)


def failure(state: str, value: Any) -> InferqError:
    """The typed error of a failed job; errors Celery raised itself become `worker_error`,
    except a task name no worker knows (Celery stores NotRegistered for it) and a job
    revoked before it ran (REVOKED; `expired` when its deadline passed in the queue)."""
    if isinstance(value, InferqError):
        return value
    if isinstance(value, NotRegistered):
        return UnknownTask(f"no worker knows task {value}")
    if state == "REVOKED" or isinstance(value, TaskRevokedError):
        # Celery stores TaskRevokedError("expired") for a job whose `expires` had passed
        # when a worker received it; the job body never ran.
        if str(value) == "expired":
            return JobExpired("the job's deadline (expires) passed before a worker ran it")
        return JobRevoked(f"the job was revoked before it ran: {value}")
    return InferqError({"code": "worker_error", "message": f"{state}: {value!r}"})
