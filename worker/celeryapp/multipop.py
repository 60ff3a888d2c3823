"""Many queue entries per Redis round trip, taken and recorded as unacked in one step.

kombu takes one entry per ``BRPOP`` and records it as unacked with one MULTI of its
own: two round trips, an event-loop tick and an event flush per job, most of a busy
worker's consumer CPU (docs/benchmarks.md, "the per-job budget"). Here, after every
pop that found something, the consumer runs ``TAKE_SCRIPT`` instead of the next
``BRPOP``: in one atomic step Redis moves up to the free job slots
(``can_consume_max_estimate``: the prefetch limit holds as before; at most
``MAX_TAKE``) from the queue into kombu's unacked records, each with its holder
(worker.celeryapp.holders), exactly as kombu and ``SafeQoS`` would have written them.
A take that finds the queue empty hands back to kombu's blocking ``BRPOP``, so an idle
worker pays one round trip more per wake-up, a busy one one per take. It also tells
the worker (``on_drained``) that every queue it serves is empty: a stream batch
waiting for more jobs need not wait out its ``max_wait_ms`` (worker.engine.batching).

Why a script and not ``BLMPOP`` (Redis 7) or ``RPOP key count``: an entry popped but
not yet recorded lives only in this process, and a Redis restarted between the two
steps (its AOF written on SIGTERM) loses it. kombu's ``BRPOP`` has that window for one
entry; a 64-entry pop would have it for 64 (``tests/faults/test_faults.py`` saw 16
jobs lost that way). Inside the script there is no window. Its writes come before its
pops, so a Redis out of memory refuses the take before anything has moved.

Keys are tried in kombu's order (priority steps, then the queue cycle), the first
non-empty one taken from, as ``BRPOP`` does. The script only reads the envelope's
``properties`` (the delivery tag and where to restore to); an entry it cannot read,
or one over ``TAKE_MAX_BYTES`` (a bulk chunk, not worth decoding inside Redis), ends
the take and is left for ``BRPOP``, whose checks (worker.celeryapp.dead_letters) see
every entry before kombu does. Each taken entry is checked the same way here: one
the guard refuses, or whose tag the script read otherwise than Python does, loses
the script's record and goes the usual way (dead letter, or kombu's own record).
A key prefix (whose command rewriting kombu knows for ``BRPOP`` only) keeps kombu's
one-entry pops.
"""

from __future__ import annotations

import logging
from time import monotonic, time
from typing import Any

from redis.exceptions import ResponseError

from inferq.core.kombu_keys import HOLDER_OF_KEY

log = logging.getLogger("inferq.multipop")

MAX_TAKE = 64  # entries one take may move: one forward pass of stream jobs
TAKE_MAX_BYTES = 256 * 1024  # larger entries are left for BRPOP

# KEYS: unacked index, unacked, holder records, then the queue keys in kombu's order.
# ARGV: how many, now, holder ('' for none), the largest entry taken.
TAKE_SCRIPT = """
local want, now, holder, maxb = tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4])
for i = 4, #KEYS do
  local key, out = KEYS[i], {}
  while #out < 2 * want do
    local raw = redis.call('LINDEX', key, -1)
    if not raw or #raw > maxb then break end
    local ok, msg = pcall(cjson.decode, raw)
    if not ok or type(msg) ~= 'table' or type(msg.properties) ~= 'table' then break end
    local tag, info = msg.properties.delivery_tag, msg.properties.delivery_info
    if type(tag) ~= 'string' or type(info) ~= 'table' then break end
    if type(info.exchange) ~= 'string' or type(info.routing_key) ~= 'string' then break end
    local record = cjson.encode({0, info.exchange, info.routing_key})
    record = '[' .. raw .. string.sub(record, 3)
    redis.call('ZADD', KEYS[1], now, tag)
    redis.call('HSET', KEYS[2], tag, record)
    if holder ~= '' then redis.call('HSET', KEYS[3], tag, holder) end
    redis.call('RPOP', key)
    out[#out + 1], out[#out + 2] = raw, tag
  end
  if #out > 0 then return {key, out} end
  if redis.call('LLEN', key) > 0 then return false end
end
return 0
"""


def start(channel: Any, timeout: float | None) -> str:
    """Send a take on the channel's BRPOP connection when the last pop found something,
    and say which command is in flight; for ``BRPOP`` the caller sends kombu's."""
    count = take_count(channel)
    if count < 2 or channel.global_keyprefix or not channel._take_next:
        return "BRPOP"
    queues = channel._queue_cycle.consume(len(channel.active_queues))
    if not queues:
        return "BRPOP"  # kombu sends nothing either
    keys = [channel._q_for_pri(q, pri) for pri in channel.priority_steps for q in queues]
    qos, holder = channel.qos, channel.holder_id()
    indexes = (qos.unacked_index_key, qos.unacked_key, HOLDER_OF_KEY)
    args = (count, repr(time()), holder or "", TAKE_MAX_BYTES)
    connection = channel.client.connection
    channel._in_poll = connection
    channel._brpop_sent_at = monotonic()
    connection.send_command("EVAL", TAKE_SCRIPT, len(keys) + 3, *indexes, *keys, *args)
    return "EVAL"


def take_count(channel: Any) -> int:
    """Entries the next take may move: the free job slots, at most ``MAX_TAKE``."""
    free = channel.qos.can_consume_max_estimate()
    return MAX_TAKE if free is None else min(free, MAX_TAKE)


def read(channel: Any, mode: str, **options: Any) -> tuple[Any, list[tuple[Any, Any]]] | None:
    """The reply to the pop in flight (``mode``: its command), as (key, [(entry, the tag
    the script recorded, or None)] oldest first), or None when there was nothing."""
    client = channel.client
    channel._take_next = False
    try:
        popped = client.parse_response(client.connection, mode, **options)
    except ResponseError as exc:
        if mode == "BRPOP":
            raise
        # Nothing moved (a script error stops before its first write; the writes come
        # before the pops): e.g. Redis out of memory. BRPOP's path handles it.
        log.warning("a take was refused (%s); the next pop is BRPOP", exc)
        return None
    channel._take_next = bool(popped)  # after a take, take again
    if popped == 0 and channel.on_drained is not None:
        channel.on_drained()  # every queue of the take is empty: nothing more to wait for
    if not popped:
        return None
    if mode == "BRPOP":
        return popped[0], [(popped[1], None)]
    flat = list(popped[1])
    return popped[0], list(zip(flat[0::2], flat[1::2], strict=True))


def deliver_take(channel: Any, queue: str, key: str, taken: list[tuple[bytes, Any]]) -> None:
    """Check each entry and deliver it, the script's record kept only for good entries."""
    try:
        for raw, recorded in taken:
            if recorded is None:  # BRPOP's: not recorded yet, kombu's path
                channel._deliver_checked(queue, key, raw)
                continue
            tag = recorded.decode() if isinstance(recorded, bytes) else str(recorded)
            payload, problem = channel.guard.decode(raw)
            if problem is None:
                problem = _deliver_recorded(channel, queue, key, raw, payload, tag)
            else:
                channel.qos._remove_from_indices(tag).execute()  # never handed on
            if problem is not None:
                channel._dead_letter(queue, key, raw, payload, problem)
    finally:
        # Entries not delivered (a connection lost mid-take) keep their records: the
        # channel's close ends its holder, and the sweep puts them back in seconds.
        channel.qos.prerecorded.clear()


def _deliver_recorded(
    channel: Any, queue: str, key: str, raw: bytes, payload: Any, tag: str
) -> str | None:
    """Deliver an entry the script recorded under ``tag``; None, or why it is a dead letter.
    A record kombu would not have written goes: one under a tag Python reads otherwise
    (kombu then records its own), or one kombu refused before recording it."""
    prerecorded, ours = channel.qos.prerecorded, payload["properties"]["delivery_tag"] == tag
    if ours:
        prerecorded.add(tag)
    else:
        channel.qos._remove_from_indices(tag).execute()
    problem: str | None = channel._deliver_or_why(queue, key, raw, payload)
    if ours and tag in prerecorded:  # kombu's append never came: not handed on
        prerecorded.discard(tag)
        channel.qos._remove_from_indices(tag).execute()
    return problem
