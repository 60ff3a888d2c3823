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
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from inferq.core.kombu_keys import UNACKED_KEY, priority_lists

# KEYS: the queue lists to look in, then the unacked hash. Returns every task id found.
_HELD_IDS = """
local ids = {}
local function take(entry)
  local id = string.match(entry, '"id": "([^"]+)"')
  if id then ids[#ids + 1] = id end
end
for i = 1, #KEYS - 1 do
  for _, entry in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do take(entry) end
end
for _, entry in ipairs(redis.call('HVALS', KEYS[#KEYS])) do take(entry) end
return ids
"""


def held_ids(client: redis.Redis, queues: Iterable[str]) -> set[str]:
    """Task ids Redis holds for ``queues``: queued in one of their lists, or unacked
    (the unacked hash is shared by every queue, so held jobs of others count too)."""
    keys = [key for queue in sorted(set(queues)) for key in priority_lists(queue)]
    found: list[bytes] = client.eval(_HELD_IDS, len(keys) + 1, *keys, UNACKED_KEY)  # type: ignore[assignment]
    return {raw.decode() if isinstance(raw, bytes) else str(raw) for raw in found}
