"""kombu's names for a queue's Redis keys (one list per priority step, the unacked hash),
and inferq's record of who holds each unacked job.

kombu keeps a queue as one list per priority step (``NAME``, then ``NAME\\x06\\x163``,
``...6``, ``...9`` for tasks sent with a priority); a job waiting is an entry in one of
them. Jobs a worker holds (prefetched or running) are in the ``unacked`` hash, shared by
every queue of the Redis database. Read from kombu itself, so a kombu that renames them
renames these too (inferq sets no transport option that overrides them).

Beside them, inferq records which consumer holds each unacked job, so that a job whose
holder is gone goes back to its queue in seconds (docs/delivery.md, "Who holds a job"):
``HOLDER_OF_KEY`` maps a delivery tag to its holder's id, written in the same MULTI as
kombu's unacked record; ``HOLDERS_KEY`` gives each live holder the time (ms, Redis's
clock) until which it counts as alive.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis

PRIORITY_STEPS: list[int] = kombu_redis.PRIORITY_STEPS
PRIORITY_SEP: str = kombu_redis.Channel.sep
UNACKED_KEY: str = kombu_redis.Channel.unacked_key
UNACKED_INDEX_KEY: str = kombu_redis.Channel.unacked_index_key
HOLDER_OF_KEY = "inferq.unacked_holder"  # hash: delivery tag -> holder id
HOLDERS_KEY = "inferq.holders"  # sorted set: holder id -> alive until (ms, Redis TIME)
SWEEP_TOKEN_KEY = "inferq.unacked_sweep"  # one sweep in the fleet per interval

# Lua, for the scripts that read these keys (the workers' sweep, the producers' presence
# check): one definition of "this unacked job's holder is gone". Redis's clock decides,
# so hosts whose clocks disagree still agree on it. A job with no holder record was taken
# by a consumer that keeps none (not an inferq worker): it is never called gone.
LUA_HOLDER_GONE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function holder_gone(holders_key, holder, now)
  if not holder then return false end
  local alive_until = redis.call('ZSCORE', holders_key, holder)
  return (not alive_until) or tonumber(alive_until) < now
end
"""


def priority_lists(queue: str) -> list[str]:
    """The Redis lists that hold ``queue``'s waiting jobs."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]
