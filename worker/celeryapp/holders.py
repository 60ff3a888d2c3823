"""Who holds each unacked job, and the sweep that sends back the jobs nobody holds.

kombu records a delivered job in its ``unacked`` hash and forgets it only on ack. A job
whose consumer went away without restoring it (a worker killed; a connection broken
between the pop and the delivery, so the record was written and the message never
handed over; a close that met a dead Redis) waits there for the visibility timeout, an
hour by default, and the producers' resend skipped it as "held".

So each consuming channel is a *holder*: it writes its id beside each unacked record, in
kombu's own MULTI (worker.celeryapp.channel), and keeps itself alive in ``HOLDERS_KEY``
while it is open: a beat every ``beat_s``, each good for ``ttl_s`` by Redis's clock. A
closed channel is struck off at the next beat; the jobs it delivered that this process
still works on (a close whose restore met a dead Redis; the finisher still answers and
acks them through the old channel) first move to a *lingering* holder, alive until they
are acked, so only what no one here holds (a record whose message never arrived) is
swept. Every ``sweep_s`` one worker of the fleet (a token decides) claims, in one
script, the entries older than a grace of two beats whose holder is gone, and restores
each with kombu's own ``restore_by_tag``: one WATCH transaction that takes the entry out
of ``unacked`` and its index and pushes it back on its queue, so of two restores of one
entry only one pushes. A claim names the sweeper as holder: if it dies before restoring,
its claims are gone in turn and another sweeper takes them.
docs/delivery.md, "Who holds a job", states the guarantee.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
import weakref
from typing import Any

from inferq.core.kombu_keys import (
    HOLDER_OF_KEY,
    HOLDERS_KEY,
    LUA_HOLDER_GONE,
    SWEEP_TOKEN_KEY,
    UNACKED_INDEX_KEY,
    UNACKED_KEY,
)

log = logging.getLogger("inferq.holders")

# KEYS[1]: the holders set. ARGV: ttl (ms), how many alive ids follow, those ids, then
# the ids of closed holders to strike off.
_BEAT = (
    LUA_HOLDER_GONE
    + """
local alive_until = now_ms() + tonumber(ARGV[1])
local alive = tonumber(ARGV[2])
for i = 3, 2 + alive do redis.call('ZADD', KEYS[1], alive_until, ARGV[i]) end
for i = 3 + alive, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
return alive_until
"""
)

# KEYS: unacked index, unacked hash, holder of each tag, holders set, sweep token.
# ARGV: the newest index score to look at (the sweeper's clock less the grace, as kombu
# compares the visibility timeout), the sweeper's id, the token's life (ms), most claims,
# the holders' ttl (ms). The sweeper is made alive here, so no other sweep takes its
# claims before it restores them; claims it could not restore it takes again.
_CLAIM = (
    LUA_HOLDER_GONE
    + """
if not redis.call('SET', KEYS[5], ARGV[2], 'NX', 'PX', ARGV[3]) then return {} end
local now = now_ms()
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[5]), ARGV[2])
local claimed = {}
for _, tag in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
  local holder = redis.call('HGET', KEYS[3], tag)
  if holder == ARGV[2] or holder_gone(KEYS[4], holder, now) then
    redis.call('HSET', KEYS[3], tag, ARGV[2])
    claimed[#claimed + 1] = tag
    if #claimed >= tonumber(ARGV[4]) then break end
  end
end
-- Holders gone a minute ago are forgotten; gone or forgotten reads the same.
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - 60000)
return claimed
"""
)
_CLAIM_KEYS = (UNACKED_INDEX_KEY, UNACKED_KEY, HOLDER_OF_KEY, HOLDERS_KEY, SWEEP_TOKEN_KEY)

# KEYS: holder of each tag, holders set. ARGV: a closed holder, its lingering id, the
# ttl (ms), then the tags this process still works on: those move to the lingering
# holder (alive), the closed holder goes, and with it the claim on anything else.
_HAND_OVER = (
    LUA_HOLDER_GONE
    + """
local moved = 0
for i = 4, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[2])
    moved = moved + 1
  end
end
if moved > 0 then redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[3]), ARGV[2]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return moved
"""
)
# A lingering holder ends when its jobs are acked, or this long after its channel closed
# (a job Celery dropped with the old connection must not wait for the visibility timeout).
LINGER_MAX_S = 120.0
# Restores per sweep, at most: a fleet's worth of orphans comes back over a few sweeps.
MAX_CLAIMS = 2000
# How long a holder counts as alive after its last beat. Long enough for a Redis stall
# or a busy process to skip several beats (the soak stalls Redis for 4 s); short enough
# that a lost job is back within seconds. Never above the visibility timeout: kombu's
# own sweep restores every entry older than that anyway.
HOLDER_TTL_S = 10.0


def holder_ttl_s(visibility_timeout_s: float) -> float:
    return min(HOLDER_TTL_S, float(visibility_timeout_s))


class Holders:
    """This process's holders (one per consuming channel) and its beat-and-sweep thread."""

    def __init__(self, ttl_s: float, node: str | None = None) -> None:
        self.ttl_s = ttl_s
        self.beat_s = min(1.0, ttl_s / 5)  # several beats per ttl: one late beat is fine
        self.sweep_s = min(2.0, ttl_s / 2)
        # Entries younger than this are left alone whatever their holder: a holder taken
        # for gone (Redis stalled past ``ttl_s``) that still delivers is alive again at its
        # next beat. The holder check, not this, is the guarantee: hosts' clocks differ.
        self.grace_s = 2 * self.beat_s
        self._node = f"{node or socket.gethostname()}/{os.getpid()}"
        self.sweeper_id = f"{self._node}/sweep"
        self._open: dict[str, weakref.ref[Any]] = {}
        self._closed: dict[str, weakref.ref[Any]] = {}  # not yet handed over
        self._lingering: dict[str, tuple[weakref.ref[Any], float]] = {}  # and since when
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self, channel: Any) -> str:
        """A new holder id for ``channel``, alive in Redis before this returns: the
        channel's first unacked record never names a holder Redis does not know."""
        holder = f"{self._node}/{uuid.uuid4().hex[:12]}"
        with channel.conn_or_acquire() as client:
            self._beat(client, [holder], [])
        with self._lock:
            self._open[holder] = weakref.ref(channel)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="inferq-holders")
                self._thread.daemon = True
                self._thread.start()
        return holder

    def closed(self, holder: str, channel: Any) -> None:
        """``holder``'s channel closed: at the next beat the jobs it still works on move
        to a lingering holder and it is struck off, so what else it left unacked is
        swept without waiting for ``ttl_s``."""
        with self._lock:
            self._open.pop(holder, None)
            self._closed[holder] = weakref.ref(channel)

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop beating (worker shutdown). The channels closed first and restored what
        they held; their holder entries run out after ``ttl_s``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        next_sweep_at = time.monotonic() + self.sweep_s * random.uniform(0.5, 1.0)
        while True:
            stopping = self._stop.wait(self.beat_s)
            channel = self._live_channel()
            if channel is not None:
                try:
                    with channel.conn_or_acquire() as client:
                        self._beat_all(client)
                    if not stopping and time.monotonic() >= next_sweep_at:
                        # Jittered, so workers started together do not race for the token.
                        next_sweep_at = time.monotonic() + self.sweep_s * random.uniform(0.8, 1.2)
                        self.sweep(channel)
                except Exception as exc:  # Redis away: the next beat tries again
                    log.debug("holders: beat or sweep failed: %r", exc)
            if stopping:
                return

    def _live_channel(self) -> Any:
        """An open channel of this process (the newest), to talk to Redis through; the
        holders of closed or collected channels move to the closed set."""
        with self._lock:
            found = None
            for holder, ref in list(self._open.items()):
                channel = ref()
                if channel is None or getattr(channel, "closed", False):
                    self._closed[holder] = self._open.pop(holder)
                else:
                    found = channel
            return found

    def _beat_all(self, client: Any) -> None:
        with self._lock:
            closed, lingering = dict(self._closed), dict(self._lingering)
        for holder, ref in closed.items():
            self._hand_over(client, holder, ref)
        ended = [
            linger_id
            for linger_id, (ref, since) in lingering.items()
            if not _in_hand(ref()) or time.monotonic() - since > LINGER_MAX_S
        ]
        with self._lock:
            alive = [*self._open, *(h for h in self._lingering if h not in ended)]
        self._beat(client, [*alive, self.sweeper_id], ended)
        with self._lock:
            for linger_id in ended:
                self._lingering.pop(linger_id, None)

    def _hand_over(self, client: Any, holder: str, ref: weakref.ref[Any]) -> None:
        tags = _in_hand(ref())
        linger_id = f"{holder}/linger"
        ttl_ms = int(self.ttl_s * 1000)
        moved = client.eval(
            _HAND_OVER, 2, HOLDER_OF_KEY, HOLDERS_KEY, holder, linger_id, ttl_ms, *tags
        )
        with self._lock:
            del self._closed[holder]
            if moved:
                self._lingering[linger_id] = (ref, time.monotonic())

    def _beat(self, client: Any, alive: list[str], closed: list[str]) -> None:
        ttl_ms = int(self.ttl_s * 1000)
        client.eval(_BEAT, 1, HOLDERS_KEY, ttl_ms, len(alive), *alive, *closed)

    def sweep(self, channel: Any) -> int:
        """Claim the unacked entries no live holder names (older than ``grace_s``) and
        restore them to their queues as kombu does; how many were restored. Does nothing
        while another worker holds this interval's sweep token."""
        oldest = time.time() - self.grace_s
        token_ms = max(1, int(self.sweep_s * 1000 * 0.9))
        with channel.conn_or_acquire() as client:
            args = (oldest, self.sweeper_id, token_ms, MAX_CLAIMS, int(self.ttl_s * 1000))
            claimed = client.eval(_CLAIM, len(_CLAIM_KEYS), *_CLAIM_KEYS, *args)
        for tag in claimed:
            channel.qos.restore_by_tag(tag.decode() if isinstance(tag, bytes) else tag)
        if claimed:
            log.warning("restored %d unacked job(s) whose holder is gone", len(claimed))
        return len(claimed)


def _in_hand(channel: Any) -> list[str]:
    """The delivery tags ``channel`` handed to this process that it has not let go of
    (kombu's QoS: delivered, less the acks not yet flushed, less the acks and rejects
    Redis did not take: the process is done with those, and the sweep may have them)."""
    qos = None if channel is None else channel.__dict__.get("_qos")
    if qos is None:
        return []
    for _ in range(3):
        try:  # the consumer thread may ack meanwhile: copy again
            done = set(qos._dirty) | set(qos.__dict__.get("let_go", ()))
            return [tag for tag in list(qos._delivered) if tag not in done]
        except RuntimeError:
            continue
    raise RuntimeError("the channel's delivered jobs kept changing while read")
