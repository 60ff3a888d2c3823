"""A message the worker refuses still gets a typed error result.

Celery drops such a message with a log line and stores nothing, so its caller
waits until its own timeout. Here every refused message whose headers name a
task id (Celery's protocol 2: the envelope and headers are JSON in Redis
whatever the body's content type) gets one error stored under that id:

* a body in any content type but JSON (pickle, YAML, msgpack): ``ContentRefused``
  (``content_refused``). Kombu raises ContentDisallowed from the content type
  alone, before any deserializer runs, so a pickle body is never unpickled.
* a JSON body that does not decode, an envelope Celery calls invalid, or one
  of a shape Celery cannot handle (it would stop the worker):
  ``InvalidMessage`` (``invalid_message``).

Celery still logs, acks or rejects the message as before; this adds the result
(and, for the last kind, keeps the consumer alive and rejects the message).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, bootsteps, signals
from kombu.exceptions import ContentDisallowed

from inferq.errors import ContentRefused, InferqError, InvalidMessage
from worker.celeryapp.dead_letters import DeadLetter

log = logging.getLogger("inferq.refusal")


def refusal_for(message: Any, exc: BaseException) -> InferqError:
    """The typed error a refused message is answered with."""
    if isinstance(exc, ContentDisallowed):
        return ContentRefused(
            f"content type {message.content_type!r} refused: workers accept JSON only"
        )
    return InvalidMessage(f"the message is not a valid task: {type(exc).__name__}: {exc}"[:300])


def store_refusal(consumer: Any, message: Any, error: InferqError) -> None:
    """Store ``error`` as the result of the task the message's headers name, if any."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    task_id, task = headers.get("id"), headers.get("task")
    if not isinstance(task_id, str) or not task_id:
        # Not a task message of protocol 2: nobody can be waiting for a result under an
        # id. Celery's own log line stays.
        log.warning("refused a message that names no task id: %s", error.code)
        return
    # The task header is the sender's value, whatever its type: shown, never trusted.
    task = task if isinstance(task, str) else f"{task!r:.60}"
    try:
        consumer.app.backend.mark_as_failure(task_id, error)
    except Exception:
        # The consumer loop must live on; Celery has already acked or rejected the message.
        log.exception("job=%s task=%s: could not store %s", task_id, task, error.code)
        return
    events = getattr(consumer, "event_dispatcher", None)
    if events is not None:  # as Celery does for an unknown task: monitors see the failure
        events.send("task-failed", uuid=task_id, exception=repr(error))
    state = consumer.app.state
    if state is not None:
        state.metrics.job_refused(task if task in consumer.app.tasks else "unknown", error.code)
    log.warning("job=%s task=%s outcome=%s", task_id, task, error.code)


def answer_dead_letter(app: Celery, letter: DeadLetter) -> None:
    """Store ``invalid_message`` under the task id a dead-lettered entry names."""
    assert letter.task_id is not None
    error = InvalidMessage(f"the queue entry was dead-lettered: {letter.reason}"[:300])
    app.backend.mark_as_failure(letter.task_id, error)
    state = app.state
    if state is not None:
        state.metrics.job_refused("unknown", error.code)


def on_task_rejected(sender: Any, message: Any, exc: BaseException | None, **_: Any) -> None:
    # exc is None for a message that is no task at all (no headers): nothing to answer.
    if exc is not None:
        store_refusal(sender, message, refusal_for(message, exc))


def envelope_problem(message: Any) -> str | None:
    """Why a protocol-2 task message cannot be run, or None when it can (or when
    Celery's own checks will refuse it: no task header, a body that does not decode)."""
    headers = message.headers
    if not isinstance(headers, dict) or "task" not in headers:
        return None
    task_id = headers.get("id")
    if not isinstance(task_id, str) or not task_id:
        return f"the task id header must be a non-empty string, not {task_id!r:.40}"
    try:
        body = message.payload  # decoded once: Celery reuses this cached value
    except Exception:
        return None
    if not (
        isinstance(body, list)
        and len(body) == 3
        and isinstance(body[0], list)
        and isinstance(body[1], dict)
        and (body[2] is None or isinstance(body[2], dict))
    ):
        return "the body must be [args, kwargs, embed]: a list, an object, an object or null"
    return None


def _refuse(consumer: Any, message: Any, error: InferqError) -> None:
    if not message.acknowledged:
        store_refusal(consumer, message, error)
        message.reject_log_error(log, consumer.connection_errors)


def _guarded(consumer: Any, handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``handler`` (Celery's on_task_received), answering messages it would die of.

    Celery builds its request from the envelope without checking its shape: a JSON
    body that is not ``[args, kwargs, embed]`` (``{}``, ``"x"``, ``5``) or a header of the
    wrong type raises out of the consumer loop and stops the worker, and the message,
    restored to the queue, stops the next one too. Others (``[[], [], {}]``) are
    dropped later without a result.
    """

    def on_task_received(message: Any) -> Any:
        problem = envelope_problem(message)
        if problem is not None:
            _refuse(consumer, message, InvalidMessage(problem))
            return None
        try:
            return handler(message)
        except consumer.connection_errors:
            raise  # Celery's own reconnect handles these
        except Exception as exc:
            log.exception("refused a task message Celery could not handle")
            _refuse(consumer, message, refusal_for(message, exc))
            return None

    return on_task_received


class AnswerRefused(bootsteps.Step):  # type: ignore[misc]
    """Consumer step: malformed and undecodable messages get a result, and the consumer
    lives on. Celery has no signal for either, so its two handlers are wrapped here
    (this runs before the consumer starts, so they are wrapped before first use)."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        decode_error_handler = parent.on_decode_error
        create_task_handler = parent.create_task_handler

        def on_decode_error(message: Any, exc: BaseException) -> None:
            store_refusal(parent, message, refusal_for(message, exc))
            decode_error_handler(message, exc)  # logs, then acks

        def guarded_task_handler(*args: Any, **kw: Any) -> Callable[[Any], Any]:
            return _guarded(parent, create_task_handler(*args, **kw))

        parent.on_decode_error = on_decode_error
        parent.create_task_handler = guarded_task_handler


def install(app: Celery) -> None:
    app.steps["consumer"].add(AnswerRefused)
    signals.task_rejected.connect(on_task_rejected, weak=False, dispatch_uid="inferq-refusal")
