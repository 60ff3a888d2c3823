"""What a queue entry must be before kombu may touch it, and where it goes when it is not.

kombu pops an entry with ``BRPOP`` and decodes it in place: JSON, the envelope's
``properties`` and ``delivery_tag``, the body's base64, then the unacked record. An
entry that fails any of these (``5``, ``[]``, bytes that are not JSON, JSON nested
5,000 deep, an envelope without ``properties``, a body that is not base64) raises
before any handler of Celery's or ours, the worker stops ("Unrecoverable error"),
and the next worker dies of the same entry. So ``EntryGuard.admit`` checks the raw
entry first, then kombu delivers it; an entry that would break the worker is moved,
with its raw bytes, the reason and the time, to the dead-letter list
(``DEAD_LETTER_KEY``; `inferq dead-letters` lists and requeues them), and if it
names a task id that id is answered with ``invalid_message``. The consumer logs one
line and goes on.

Size is checked before any decoding: an entry over ``INFERQ_MAX_MESSAGE_BYTES`` is
dead-lettered undecoded (its task id, if any, read from the envelope's tail, where
kombu writes the headers).

The other gap of the same pop: the unacked record is a write, and a Redis that
refuses writes (``maxmemory`` with ``noeviction``) refuses it after the entry left
the list. ``SafeQoS`` turns that refusal into ``UnackedWriteFailed``, and the entry
is pushed back where it was popped from, retried until Redis takes it or the
worker stops (a last resort logs the raw entry, base64, for an operator).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery.worker import state as worker_state
from kombu.utils.json import loads

from inferq.core.constants import DEAD_LETTER_KEY

log = logging.getLogger("inferq.dead_letters")

DEFAULT_MAX_MESSAGE_BYTES = 48 * 1024 * 1024
# kombu's own body encodings; anything else makes Message() raise.
_BODY_ENCODINGS = (None, "base64", "utf-8")
_TAIL_BYTES = 64 * 1024
_TASK_ID = re.compile(rb'"id": ?"([^"\\]{1,200})"')
PUT_BACK_FIRST_WAIT_S, PUT_BACK_MAX_WAIT_S = 0.1, 5.0


class UnackedWriteFailed(Exception):
    """Redis did not record a popped entry as unacked (it refused the write)."""


@dataclass(frozen=True)
class DeadLetter:
    queue: str  # the queue it was popped from (priority suffix stripped)
    key: str  # the Redis list it was popped from
    raw: bytes
    reason: str
    task_id: str | None

    def encode(self) -> str:
        return json.dumps(
            {
                "queue": self.queue,
                "list": self.key,
                "reason": self.reason,
                "task_id": self.task_id,
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                "size_bytes": len(self.raw),
                "raw_b64": base64.b64encode(self.raw).decode(),
            }
        )


# Called with each dead letter that names a task id, to answer that id (the worker
# stores an invalid_message result through its backend).
AnswerTask = Callable[[DeadLetter], None]


def envelope_problem(payload: Any) -> str | None:
    """Why kombu cannot build a message from ``payload``, or None when it can."""
    if not isinstance(payload, dict):
        return f"the entry is a JSON {type(payload).__name__}, not an object"
    props = payload.get("properties")
    if not isinstance(props, dict):
        return "the envelope has no properties object"
    info = props.get("delivery_info")
    tag = props.get("delivery_tag")
    checks = (
        (isinstance(tag, str) and bool(tag), "properties.delivery_tag is not a non-empty string"),
        (
            isinstance(info, dict) and "exchange" in info and "routing_key" in info,
            "properties.delivery_info lacks exchange and routing_key",
        ),
        (props.get("body_encoding") in _BODY_ENCODINGS, "the body encoding is not kombu's"),
        # bytes: kombu's JSON gives back a binary body (a pickle) sent without body
        # encoding as bytes; refusal answers it content_refused from its content type.
        (isinstance(payload.get("body"), str | bytes | None), "the body is not a string"),
        (isinstance(payload.get("headers"), dict | None), "the headers are not an object"),
        (
            all(
                isinstance(payload.get(k), str | None) for k in ("content-type", "content-encoding")
            ),
            "content-type or content-encoding is not a string",
        ),
    )
    return next((message for ok, message in checks if not ok), None)


def task_id_of(payload: Any, raw: bytes) -> str | None:
    """The task id an entry names, if any: from its headers, or (an entry too large or
    too broken to decode) the last ``"id": "..."`` of its tail, where kombu puts them."""
    if isinstance(payload, dict):
        headers = payload.get("headers")
        task_id = headers.get("id") if isinstance(headers, dict) else None
        return task_id if isinstance(task_id, str) and task_id else None
    found = _TASK_ID.findall(raw[-_TAIL_BYTES:])
    return found[-1].decode(errors="replace") if found else None


class EntryGuard:
    """One process's rules for raw queue entries, and what it does with bad ones."""

    def __init__(
        self,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        answer: AnswerTask | None = None,
        *,
        consumer_errors: bool = False,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.answer = answer
        # A worker's consumer (Celery's) raising on an entry would stop the worker: there
        # the entry is dead-lettered. Elsewhere (a client reading replies) the callback's
        # exception is its own, e.g. `inferq health` ending a broadcast early.
        self.consumer_errors = consumer_errors

    def decode(self, raw: bytes) -> tuple[Any, str | None]:
        """(the decoded envelope, None) or (whatever decoded, why it cannot be delivered)."""
        if len(raw) > self.max_message_bytes:
            return None, f"{len(raw)} bytes > INFERQ_MAX_MESSAGE_BYTES {self.max_message_bytes}"
        try:
            # kombu's own decoder, so what is delivered is what kombu would have made.
            payload = loads(raw)  # type: ignore[no-untyped-call]
        except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: nested deep
            return None, f"not JSON: {type(exc).__name__}: {exc}"[:200]
        return payload, envelope_problem(payload)

    def dead_letter(self, client: Any, letter: DeadLetter) -> None:
        """Move the entry to the dead-letter list and answer its task id, if any."""
        try:
            client.lpush(DEAD_LETTER_KEY, letter.encode())
        except Exception:  # Redis refuses even this: the raw bytes go to the log instead
            log.critical(
                "could not dead-letter an entry of %s (%s); raw entry, base64: %s",
                letter.queue,
                letter.reason,
                base64.b64encode(letter.raw).decode(),
            )
        log.warning(
            "dead-lettered an entry of queue %s: %s (task id %s, %d bytes)",
            letter.queue,
            letter.reason,
            letter.task_id,
            len(letter.raw),
        )
        if letter.task_id is not None and self.answer is not None:
            try:
                self.answer(letter)
            except Exception:  # the consumer must live on; the entry is kept all the same
                log.exception("job=%s: could not store its invalid_message", letter.task_id)


def put_back(push: Callable[[], object], queue: str, raw: bytes) -> None:
    """Push a popped entry back (``push``), retrying while Redis refuses, until it takes
    it or the worker is asked to stop; then the raw entry is logged, base64."""
    wait_s = PUT_BACK_FIRST_WAIT_S
    while True:
        try:
            push()
            log.warning("an entry of %s went back to its queue: Redis refused to record it", queue)
            return
        except Exception as exc:
            if worker_state.should_stop is not None or worker_state.should_terminate is not None:
                log.critical(
                    "stopping with an entry of %s neither recorded nor put back (%s); "
                    "raw entry, base64: %s",
                    queue,
                    exc,
                    base64.b64encode(raw).decode(),
                )
                return
            log.error("Redis refuses to take back an entry of %s (%s); retrying", queue, exc)
            time.sleep(wait_s)  # the consumer waits: Redis is full, taking more would not help
            wait_s = min(wait_s * 2, PUT_BACK_MAX_WAIT_S)
