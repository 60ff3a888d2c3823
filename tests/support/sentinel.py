"""A Redis that survives losing its primary, made of real processes: a primary, a
replica copying it, and three Sentinels watching them (quorum 2), all on local ports."""

from __future__ import annotations

import time
from contextlib import ExitStack

import redis

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
