"""A child started by ``with Managed() as m:`` never outlives a start that was cut short."""

from __future__ import annotations

import subprocess

import pytest

from inferq.core.processes import Managed
from inferq.ops.redis_server import RedisServer


def test_an_interrupted_start_stops_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C or SIGTERM (the CLI turns it into KeyboardInterrupt) while the server's
    # first PING is awaited: the redis-server already runs and must be stopped.
    started: list[subprocess.Popen[bytes]] = []

    def interrupted(self: RedisServer, timeout_s: float) -> None:
        assert self.process is not None
        started.append(self.process)
        raise KeyboardInterrupt

    monkeypatch.setattr(RedisServer, "_wait_ready", interrupted)
    with pytest.raises(KeyboardInterrupt), RedisServer():
        pytest.fail("the block must not run")
    assert len(started) == 1
    assert started[0].poll() is not None, "redis-server outlived an interrupted start"


def test_a_failed_start_is_closed() -> None:
    class Slow(Managed):
        closed = False

        def start(self) -> Slow:
            raise TimeoutError("not ready")

        def close(self) -> None:
            self.closed = True

    slow = Slow()
    with pytest.raises(TimeoutError), slow:
        pytest.fail("the block must not run")
    assert slow.closed
