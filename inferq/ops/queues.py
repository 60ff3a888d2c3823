"""`inferq queues`: how many jobs wait in each queue, for autoscalers and operators.

Waiting jobs are counted over every kombu priority list of a queue; jobs workers hold
(the unacked hash, shared by every queue of the database) are one total, since
splitting it by queue means reading every held message (a bulk chunk is hundreds of
kilobytes). See inferq.core.kombu_keys.
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
from inferq.core.kombu_keys import PRIORITY_STEPS, UNACKED_KEY, priority_lists
from inferq.core.routing import queue_names
from inferq.core.settings import Settings


def depths(client: redis.Redis, queues: Sequence[str]) -> dict[str, Any]:
    """{"queues": {name: waiting jobs}, "unacked_all_queues": held jobs, "dead_letters":
    entries workers could not deliver} in one round trip."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in priority_lists(queue):
            pipe.llen(key)
    pipe.hlen(UNACKED_KEY)
    pipe.llen(DEAD_LETTER_KEY)
    counts = pipe.execute()
    per_queue = len(PRIORITY_STEPS)
    waiting = {q: sum(counts[i * per_queue : (i + 1) * per_queue]) for i, q in enumerate(queues)}
    return {"queues": waiting, "unacked_all_queues": counts[-2], "dead_letters": counts[-1]}


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
        print(f"(all queues)\t{found['dead_letters']} dead letters (`inferq dead-letters`)")
    return 0
