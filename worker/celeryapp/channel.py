"""kombu's Redis channel with two fixes: it survives a Redis restart, and it reuses
one client for its commands.

**The restart race.** When the broker connection drops, Celery's consumer first calls
``Connection.collect()``, then ``Connection.close()``. If the first close of the
default channel fails half-way (its pending ``BRPOP`` read meets the dead socket),
``collect()`` still detaches the transport (``transport.client = None``). The second
close then restores the channel's unacked messages through a new Redis client, whose
parameters kombu reads from ``transport.client``: ``AttributeError: 'NoneType' object
has no attribute 'hostname'``. That error is not a connection error, so the consumer
dies ("Unrecoverable error", "Error on stopping Hub") and the worker takes no more
jobs. It happened in about one Redis restart in three (``tests/test_faults.py``).

The fix: each channel remembers the connection settings it was opened with and uses
them when its transport has been detached, so the close restores the messages and
the consumer reconnects as it does when the race is not hit. Checked against kombu
5.7 (``requirements.lock``); ``install()`` refuses other major versions loudly rather
than patch a class whose internals may have moved.

**One client.** kombu builds a new ``redis.Redis`` for every ack, publish and task
event (``conn_or_acquire``), and building one (its table of response callbacks) was
a tenth of a busy worker's CPU (README, Benchmarks). The client holds no connection
of its own (each command takes one from the channel's pool), so one per pool serves
every thread; a new pool (after a reconnect) gets a new client.
"""

from __future__ import annotations

from typing import Any

import kombu
from kombu.transport import redis as kombu_redis

_TESTED_MAJOR = "5."


class ReconnectSafeChannel(kombu_redis.Channel):
    def __init__(self, connection: Any, *args: Any, **kwargs: Any) -> None:
        # Before super().__init__: opening the channel already reads the settings.
        self._opened_with = connection.client
        super().__init__(connection, *args, **kwargs)  # type: ignore[no-untyped-call]

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport.client is not None:
            return super()._connparams(asynchronous)  # type: ignore[no-untyped-call,no-any-return]
        # Detached by Connection.collect(): lend the settings back for this one call.
        transport.client = self._opened_with
        try:
            return super()._connparams(asynchronous)  # type: ignore[no-untyped-call,no-any-return]
        finally:
            transport.client = None

    _sync_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # BRPOP's client: kombu keeps that one already
            return super()._create_client(asynchronous)  # type: ignore[no-untyped-call]
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            # Two threads may both build one here; either serves.
            client = self._sync_client = super()._create_client(False)  # type: ignore[no-untyped-call]
        return client


class ReconnectSafeSentinelChannel(ReconnectSafeChannel, kombu_redis.SentinelChannel):
    """The same two fixes for ``sentinel://`` brokers. kombu's SentinelChannel asks the
    Sentinels for the master each time it builds a pool, so a reconnect after a failover
    finds the promoted replica, and the one client follows the pool as above. It reads
    the Sentinels' addresses from ``transport.client.alt`` as well as ``_connparams``:
    after a failover the race of the module's docstring meets it there too (an ack's
    pool built on a detached transport: ``'NoneType' object has no attribute 'alt'``)."""

    def _sentinel_managed_pool(self, asynchronous: bool = False) -> Any:
        transport = self.connection
        if transport.client is not None:
            return super()._sentinel_managed_pool(asynchronous)  # type: ignore[no-untyped-call]
        transport.client = self._opened_with  # lent back for this one call, as above
        try:
            return super()._sentinel_managed_pool(asynchronous)  # type: ignore[no-untyped-call]
        finally:
            transport.client = None


def install() -> None:
    """Make kombu's Redis transports (``redis://``, ``rediss://``, ``sentinel://``) open
    safe channels."""
    if not kombu.__version__.startswith(_TESTED_MAJOR):
        found = kombu.__version__
        raise RuntimeError(f"worker.celeryapp.channel was checked against kombu 5.x, not {found}")
    kombu_redis.Transport.Channel = ReconnectSafeChannel
    kombu_redis.SentinelTransport.Channel = ReconnectSafeSentinelChannel
