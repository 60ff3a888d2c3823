"""A send to Redis whose failure is a typed BrokerUnavailable, never a kombu or redis error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from celery.backends.asynchronous import E_RETRY_LIMIT_EXCEEDED
from celery.result import AsyncResult
from kombu.exceptions import OperationalError

from inferq.errors import BrokerUnavailable

# What a send raises when Redis does not answer: kombu's publish after its retries, or
# Celery's result consumer after its reconnects (a RuntimeError, told apart by Celery's
# own message; it says the application must be restarted, yet a send after Redis is
# back works: tests/faults/test_multihost.py).
_SEND_ERRORS = (OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def sending(send: Callable[..., AsyncResult], **kwargs: Any) -> AsyncResult:
    """``send(**kwargs)``, with Redis being unreachable a typed BrokerUnavailable."""
    # "May": a publish whose reply was lost may have reached Redis all the same, and a
    # job sent before the result store's reconnects failed is queued. Sending it again
    # under the same id is safe: one result key per id.
    unsure = "Redis did not answer; the job may still have reached it (a resend is safe)"
    try:
        return send(**kwargs)
    except _SEND_ERRORS as exc:
        raise BrokerUnavailable(f"{unsure}: {type(exc).__name__}: {exc}") from exc
    except RuntimeError as exc:
        if str(exc) != E_RETRY_LIMIT_EXCEEDED:
            raise
        raise BrokerUnavailable(f"{unsure}: the result store's reconnects failed") from exc
