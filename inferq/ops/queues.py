"""`inferq queues`: how many jobs wait in each queue, for autoscalers and operators.

Waiting jobs are counted over every kombu priority list of a queue; jobs workers hold
(the unacked hash, shared by every queue of the database) are one total, since
splitting it by queue means reading every held message (a bulk chunk is hundreds of
kilobytes). See inferq.core.kombu_keys. Of those, the ones whose holder is gone (a
worker that died, a connection broken mid-delivery) are counted apart: a sweep puts them
back within seconds, so a count that stays above 0 means no worker is sweeping.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import redis

from inferq.core import exit_codes
from inferq.core.broker import check_broker, redis_client
from inferq.core.constants import DEAD_LETTER_KEY
from inferq.core.kombu_keys import (
    HOLDER_OF_KEY,
    HOLDERS_KEY,
    LUA_HOLDER_GONE,
    PRIORITY_STEPS,
    UNACKED_KEY,
    priority_lists,
)
from inferq.core.routing import queue_names
from inferq.core.settings import Settings

# KEYS: the unacked hash, the holder of each entry, the holders set. The entries whose
# holder is gone, counted by tag (no message is read).
_HOLDER_GONE_COUNT = (
    LUA_HOLDER_GONE
    + """
local now, gone = now_ms(), 0
for _, tag in ipairs(redis.call('HKEYS', KEYS[1])) do
  if holder_gone(KEYS[3], redis.call('HGET', KEYS[2], tag), now) then gone = gone + 1 end
end
return gone
"""
)


def depths(client: redis.Redis, queues: Sequence[str]) -> dict[str, Any]:
    """{"queues": {name: waiting jobs}, "unacked_all_queues": held jobs,
    "unacked_holder_gone": those of them no live worker holds, "dead_letters": entries
    workers could not deliver} in one round trip."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in priority_lists(queue):
            pipe.llen(key)
    pipe.hlen(UNACKED_KEY)
    pipe.eval(_HOLDER_GONE_COUNT, 3, UNACKED_KEY, HOLDER_OF_KEY, HOLDERS_KEY)
    pipe.llen(DEAD_LETTER_KEY)
    counts = pipe.execute()
    per_queue = len(PRIORITY_STEPS)
    waiting = {q: sum(counts[i * per_queue : (i + 1) * per_queue]) for i, q in enumerate(queues)}
    return {
        "queues": waiting,
        "unacked_all_queues": counts[-3],
        "unacked_holder_gone": counts[-2],
        "dead_letters": counts[-1],
    }


def run(settings: Settings, logical_queues: Sequence[str], as_json: bool, timeout_s: float) -> int:
    """The command: exit 0 with the counts, 2 for bad names, 4 without Redis."""
    try:
        queues = queue_names(logical_queues, settings)
    except ValueError as exc:
        print(f"inferq queues: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    problem = check_broker(settings, timeout_s)
    if problem is not None:
        print(f"inferq queues: broker unreachable: {problem}", file=sys.stderr)
        return exit_codes.BROKER
    with redis_client(settings, timeout_s) as client:
        found = depths(client, queues)
    if as_json:
        print(json.dumps(found))
    else:
        for queue, waiting in found["queues"].items():
            print(f"{queue}\t{waiting} waiting")
        print(f"(all queues)\t{found['unacked_all_queues']} held by workers")
        gone = found["unacked_holder_gone"]
        print(f"(all queues)\t{gone} of them held by no live worker (swept back in seconds)")
        print(f"(all queues)\t{found['dead_letters']} dead letters (`inferq dead-letters`)")
    return 0
