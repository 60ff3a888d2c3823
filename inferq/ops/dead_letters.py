"""`inferq dead-letters`: the queue entries workers could not deliver, to inspect and requeue.

A worker moves an entry here (worker/celeryapp/dead_letters.py) instead of dying of
it: the raw bytes, base64, with the queue, the reason, the time and the task id it
names. Newest first. Requeueing pushes the raw bytes back onto the list they came
from, as a new entry at the end of the line; an entry that is still broken comes
straight back here, so requeue what was fixed upstream (or an entry refused only for
its size, once INFERQ_MAX_MESSAGE_BYTES is raised).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from inferq.core.constants import DEAD_LETTER_KEY


@dataclass(frozen=True)
class Letter:
    index: int  # position in the list, 0 = newest
    stored: bytes  # the list element itself (what LREM matches)
    fields: dict[str, Any]

    @property
    def raw(self) -> bytes:
        return base64.b64decode(self.fields.get("raw_b64", ""))

    def summary(self) -> dict[str, Any]:
        return {"index": self.index, **{k: v for k, v in self.fields.items() if k != "raw_b64"}}


def read(client: redis.Redis, limit: int | None = None) -> list[Letter]:
    """The dead letters, newest first (at most ``limit``)."""
    stop = -1 if limit is None else limit - 1
    stored: list[bytes] = client.lrange(DEAD_LETTER_KEY, 0, stop)  # type: ignore[assignment]
    return [Letter(i, value, _fields(value)) for i, value in enumerate(stored)]


def _fields(value: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(value)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):  # not written by a worker: keep it visible as it is
        return {"reason": "not a dead-letter record", "raw_b64": base64.b64encode(value).decode()}
    return fields


def count(client: redis.Redis) -> int:
    return int(client.llen(DEAD_LETTER_KEY))  # type: ignore[arg-type]


def requeue(client: redis.Redis, letters: Sequence[Letter]) -> int:
    """Push each letter's raw entry back onto its list and drop it from the dead letters;
    the number requeued (a letter someone else took meanwhile is skipped)."""
    done = 0
    for letter in letters:
        key = letter.fields.get("list") or letter.fields.get("queue")
        if not isinstance(key, str):
            continue
        with client.pipeline(transaction=True) as pipe:
            pipe.lrem(DEAD_LETTER_KEY, 1, letter.stored)  # type: ignore[arg-type]  # bytes work
            pipe.lpush(key, letter.raw)
            removed, _ = pipe.execute()
        if not removed:  # taken by another operator between our read and now: undo
            client.lrem(key, 1, letter.raw)  # type: ignore[arg-type]
            continue
        done += 1
    return done


def purge(client: redis.Redis) -> int:
    """Delete every dead letter; how many there were."""
    with client.pipeline(transaction=True) as pipe:
        pipe.llen(DEAD_LETTER_KEY)
        pipe.delete(DEAD_LETTER_KEY)
        n, _ = pipe.execute()
    return int(n)


def show(letter: Letter) -> str:
    """One letter for a person: its fields, then the raw entry (as text if it is UTF-8)."""
    raw = letter.raw
    try:
        body = raw.decode()
    except UnicodeDecodeError:
        body = "base64: " + base64.b64encode(raw).decode()
    return json.dumps(letter.summary(), indent=2) + "\n" + body
