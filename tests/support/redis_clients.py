"""Redis clients a test opens for itself, closed when that test ends.

A client left open is closed by the garbage collector at some later point, inside
whichever test is running then, and pytest fails that test with an unclosed-socket
``ResourceWarning`` (a unit test failed this way in CI). Tests and the helpers they
call open theirs with ``redis_client``; tests/conftest.py closes them after each test.
Module- and session-scoped fixtures close their own clients instead.
"""

from __future__ import annotations

from typing import Any

import redis

_open: list[redis.Redis] = []


def redis_client(url: str, **kwargs: Any) -> redis.Redis:
    """``redis.Redis.from_url(url, **kwargs)``, closed when the current test ends."""
    client = redis.Redis.from_url(url, **kwargs)
    _open.append(client)
    return client


def close_all() -> None:
    """Close every client opened with ``redis_client`` since the last call."""
    while _open:
        _open.pop().close()
