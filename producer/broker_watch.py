"""Notices the broker coming back: after a Redis restart or a Sentinel failover, the jobs
in flight are checked at once instead of after the resend interval.

A failover can lose the last writes the old primary took (a job sent, an answer
stored: replication is asynchronous), and a restart with AOF everysec the last second
of them. A job so lost is resent only when two resend rounds in a row find it nowhere
(producer.presence); with `inferq score`'s 120 s interval a lost chunk stalled a run
for 240 s. So a waiting client reads Redis's ``run_id`` (INFO server: a new value after
a restart, another server's after a failover) at most every ``every_s``; a look that
fails and a later one that answers also counts, since it may be the same server back.
Each change is one more *generation*; a job sent in an earlier generation is checked
at once, and again a few seconds later (the two rounds), then on the usual interval.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

LOOK_EVERY_S = 1.0
# What a look at a broker that is away raises (redis-py's errors; OSError for a socket
# that fails below them).
_AWAY = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class BrokerWatch:
    def __init__(self, client_of: Callable[[], redis.Redis], every_s: float = LOOK_EVERY_S) -> None:
        self._client_of = client_of  # the result store's client: the master, after a failover
        self.every_s = every_s
        self.generation = 0
        self._run_id: str | None = None
        self._away = False
        self._looked_at = -math.inf
        self._blind = False  # a Redis that refuses INFO (an ACL): never a new generation
        self._lock = threading.Lock()

    def look(self) -> int:
        """The broker's generation: one more each time it came back or changed server.
        Asks Redis at most every ``every_s``; between, the last answer."""
        with self._lock:
            now = time.monotonic()
            if self._blind or now - self._looked_at < self.every_s:
                return self.generation
            self._looked_at = now
            try:
                info: dict[str, Any] = self._client_of().info("server")  # type: ignore[assignment]
                run_id = str(info["run_id"])
            except _AWAY:
                self._away = True
                return self.generation
            except (redis.exceptions.ResponseError, KeyError):
                self._blind = True  # resends then keep their usual interval
                return self.generation
            changed = self._run_id is not None and run_id != self._run_id
            if changed or self._away:
                self.generation += 1
            self._run_id, self._away = run_id, False
            return self.generation
