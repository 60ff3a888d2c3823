"""A Redis that survives losing its primary, made of real processes: a primary, a
replica copying it, and three Sentinels watching them (quorum 2), all on local ports."""

from __future__ import annotations

import time
from contextlib import ExitStack

import redis

from inferq.core.kombu_keys import UNACKED_INDEX_KEY, UNACKED_KEY, priority_lists
from inferq.core.processes import Managed
from inferq.ops.redis_server import RedisServer
from inferq.ops.sentinel import SentinelServer

SENTINELS = 3


def wait_for(check: object, what: str, timeout_s: float) -> None:
    """Poll ``check()`` until it is true; fail naming ``what`` past the deadline."""
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.05)  # polling servers' own state; deadline-bounded


class SentinelGroup(Managed):
    def __init__(self, master_name: str, *, down_after_ms: int = 1000) -> None:
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        self._stack = ExitStack()
        self.primary = RedisServer()
        self.replica = RedisServer(replica_of=self.primary.port)
        self.sentinels: list[SentinelServer] = []

    def start(self) -> SentinelGroup:
        with ExitStack() as stack:
            stack.enter_context(self.primary)
            stack.enter_context(self.replica)
            wait_for(self.replica_in_sync, "replica linked to the primary", 20)
            for _ in range(SENTINELS):
                sentinel = SentinelServer(
                    self.master_name, self.primary.port, down_after_ms=self.down_after_ms
                )
                self.sentinels.append(stack.enter_context(sentinel))
            # Each Sentinel must know the replica (to promote it) and the other Sentinels
            # (to reach a quorum): they learn both from the primary within seconds.
            wait_for(self.sentinels_ready, "Sentinels aware of the replica and each other", 30)
            self._stack = stack.pop_all()
        return self

    def replica_in_sync(self) -> bool:
        with redis.Redis(port=self.replica.port, socket_timeout=2) as client:
            info = client.info("replication")
        return bool(info.get("master_link_status") == "up")

    def sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            with redis.Redis(port=sentinel.port, socket_timeout=2) as client:
                master = client.sentinel_master(self.master_name)
            if master["num-slaves"] < 1 or master["num-other-sentinels"] < SENTINELS - 1:
                return False
        return True

    @property
    def url(self) -> str:
        """Celery's form: every Sentinel, ``;``-separated, database 0."""
        return ";".join(s.url for s in self.sentinels) + "/0"

    def master_port(self) -> int | None:
        """The master's port as the first Sentinel sees it now."""
        address = self.sentinels[0].master_address()
        return None if address is None else address[1]

    def close(self) -> None:
        self._stack.close()


# KEYS: the queue's lists, the unacked hash, the unacked index; ARGV: task ids. Every
# queued or unacked entry naming one of them, and its stored result, are removed.
_FORGET = """
local wanted = {}
for _, id in ipairs(ARGV) do wanted[id] = true end
local function named(entry)
  local id = string.match(entry, '"id": "([^"]+)"')
  return id and wanted[id]
end
local removed = 0
for i = 1, #KEYS - 2 do
  for _, entry in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do
    if named(entry) then removed = removed + redis.call('LREM', KEYS[i], 0, entry) end
  end
end
local unacked = redis.call('HGETALL', KEYS[#KEYS - 1])
for i = 1, #unacked, 2 do
  if named(unacked[i + 1]) then
    redis.call('HDEL', KEYS[#KEYS - 1], unacked[i])
    redis.call('ZREM', KEYS[#KEYS], unacked[i])
    removed = removed + 1
  end
end
for _, id in ipairs(ARGV) do removed = removed + redis.call('DEL', 'celery-task-meta-' .. id) end
return removed
"""


def forget_jobs(port: int, queue: str, task_ids: list[str]) -> int:
    """Remove every trace of ``task_ids`` from the Redis on ``port`` (queued, unacked,
    answered): what a failover leaves of jobs whose writes the replica never got. How
    many entries and results were removed."""
    keys = [*priority_lists(queue), UNACKED_KEY, UNACKED_INDEX_KEY]
    with redis.Redis(port=port, socket_timeout=5) as client:
        return int(client.eval(_FORGET, len(keys), *keys, *task_ids))
