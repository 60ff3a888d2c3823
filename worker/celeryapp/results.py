"""Many job results stored in two Redis round trips, as Celery stores one.

Celery's Redis backend stores each result with a GET (a result that is already
SUCCESS is never overwritten: a redelivered job must not replace its answer)
and then a SETEX + PUBLISH pipeline: two round trips per job, about a fifth of
a busy worker's CPU (README, Benchmarks). ``store_done`` does the same for a
whole batch of jobs with one MGET and one pipeline, building every value with
the backend's own meta and encoding; tests/unit/test_results.py checks the stored
values against ``Backend.store_result``'s, so a Celery upgrade that changes the
format fails a test rather than a producer.

What this path does not take is stored one by one with ``mark_as_done`` and
Celery's retries (``fast_path``): jobs of a chord, jobs that ignore their
result, a backend other than Redis, and any batch that meets an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import states
from celery.backends.redis import RedisBackend


def fast_path(backend: Any, request: Any) -> bool:
    """Whether a job's success can be stored by ``store_done`` (else: mark_as_done)."""
    return isinstance(backend, RedisBackend) and not request.chord and not request.ignore_result


def store_done(backend: RedisBackend, done: Sequence[tuple[Any, Any]]) -> None:
    """Store ``(request, result)`` pairs as SUCCESS; raises on any Redis error, having
    stored some, none or all of them (storing one again is harmless)."""
    if not done:
        return
    keys = [backend.get_key_for_task(req.id) for req, _ in done]
    current = backend.mget(keys)
    with backend.client.pipeline() as pipe:
        for key, value, (req, result) in zip(keys, current, done, strict=True):
            if value is not None and backend.decode_result(value)["status"] == states.SUCCESS:
                continue  # Celery's own rule: a success is final
            meta = backend._get_result_meta(
                result=backend.encode_result(result, states.SUCCESS),
                state=states.SUCCESS,
                traceback=None,
                request=req._context,
            )
            meta["task_id"] = req.id
            encoded = backend.encode(meta)
            if backend.expires:
                pipe.setex(key, backend.expires, encoded)
            else:
                pipe.set(key, encoded)
            pipe.publish(key, encoded)
        pipe.execute()
