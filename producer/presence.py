"""Which jobs Redis still holds: waiting in their queue, or delivered and not yet acked.

A resend is for a job the broker lost (the BRPOP gap, docs/delivery.md). A job still
waiting in a long queue, or held by a busy worker, is not lost: resending it would
only queue a second copy, and a backlog resent every interval grows by itself. So
before a resend the client asks Redis which of its pending jobs it holds, and sends
again only the others.

One server-side script reads each entry's task id (kombu writes the headers, with
``"id": "..."``, after the base64 body) and returns the ids only, so a backlog of large
chunk messages never crosses the network. Its cost is a scan of the queue's entries
in Redis, once per resend round.

An unacked job whose holder is gone (its worker died, or its connection broke between
the pop and the delivery: docs/delivery.md, "Who holds a job") is not held: no worker
will answer it until a sweep puts it back, so it counts as missing, and a resend
covers it if it stays so.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from inferq.core.kombu_keys import (
    HOLDER_OF_KEY,
    HOLDERS_KEY,
    LUA_HOLDER_GONE,
    UNACKED_KEY,
    priority_lists,
)

# KEYS: the queue lists to look in, then the unacked hash, the holder of each unacked
# entry, the holders set. Returns every task id found, less those whose holder is gone.
_HELD_IDS = (
    LUA_HOLDER_GONE
    + """
local ids = {}
local function take(entry)
  local id = string.match(entry, '"id": "([^"]+)"')
  if id then ids[#ids + 1] = id end
end
local queues = #KEYS - 3
for i = 1, queues do
  for _, entry in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do take(entry) end
end
local now = now_ms()
local unacked = redis.call('HGETALL', KEYS[queues + 1])
for i = 1, #unacked, 2 do
  local holder = redis.call('HGET', KEYS[queues + 2], unacked[i])
  if not holder_gone(KEYS[queues + 3], holder, now) then take(unacked[i + 1]) end
end
return ids
"""
)


def held_ids(client: redis.Redis, queues: Iterable[str]) -> set[str]:
    """Task ids Redis holds for ``queues``: queued in one of their lists, or unacked
    by a live holder (the unacked hash is shared by every queue, so held jobs of others
    count too)."""
    keys = [key for queue in sorted(set(queues)) for key in priority_lists(queue)]
    keys += [UNACKED_KEY, HOLDER_OF_KEY, HOLDERS_KEY]
    found: list[bytes] = client.eval(_HELD_IDS, len(keys), *keys)  # type: ignore[assignment]
    return {raw.decode() if isinstance(raw, bytes) else str(raw) for raw in found}
