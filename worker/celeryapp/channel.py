"""kombu's Redis channel with three fixes: it survives a Redis restart, it reuses
one client for its commands, and no queue entry can stop the worker.

**The restart race.** When the broker connection drops, Celery's consumer first calls
``Connection.collect()``, then ``Connection.close()``. If the first close of the
default channel fails half-way (its pending ``BRPOP`` read meets the dead socket),
``collect()`` still detaches the transport (``transport.client = None``). The second
close then restores the channel's unacked messages through a new Redis client, whose
parameters kombu reads from ``transport.client``: ``AttributeError: 'NoneType' object
has no attribute 'hostname'``. That error is not a connection error, so the consumer
dies ("Unrecoverable error", "Error on stopping Hub") and the worker takes no more
jobs. It happened in about one Redis restart in three (``tests/faults/test_faults.py``).

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

**Who holds a job.** Each consuming channel is a holder (worker.celeryapp.holders): its
id goes beside each unacked record, in the same MULTI as kombu's, and is struck off with
it on ack, reject and restore; closing the channel ends the holder. A job whose holder
is gone is swept back to its queue in seconds rather than after the visibility timeout.

**Entries that would stop the worker.** ``_brpop_read`` is kombu's, with one change:
the popped entry goes through ``EntryGuard`` (worker.celeryapp.dead_letters) before
kombu decodes it, and an unacked record Redis refuses puts the entry back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from queue import Empty
from time import time
from typing import Any, ClassVar

import kombu
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps

from inferq.core.kombu_keys import HOLDER_OF_KEY
from worker.celeryapp import multipop
from worker.celeryapp.dead_letters import (
    DeadLetter,
    EntryGuard,
    UnackedWriteFailed,
    put_back,
    task_id_of,
)
from worker.celeryapp.holders import Holders

_TESTED_MAJOR = "5."
log = logging.getLogger(__name__)


class SafeQoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        # Tags of a take (worker.celeryapp.multipop) whose unacked records are written.
        self.prerecorded: set[str] = set()

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.prerecorded:
            self.prerecorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]
            return
        try:
            self._record(message, delivery_tag, self.channel.holder_id())
        except self.channel.connection_errors:
            raise  # Celery's reconnect restores the channel's unacked entries
        except Exception as exc:  # e.g. OOM: Redis refuses the write; the entry is popped
            raise UnackedWriteFailed(str(exc)) from exc

    def _record(self, message: Any, delivery_tag: str, holder: str | None) -> None:
        # kombu 5.7's QoS.append, with the holder written in the same MULTI: no moment
        # when the unacked record exists and its holder record does not.
        delivery = message.delivery_info
        entry = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])  # type: ignore[no-untyped-call]
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time()})
            pipe.hset(self.unacked_key, delivery_tag, entry)
            if holder is not None:
                pipe.hset(HOLDER_OF_KEY, delivery_tag, holder)
            pipe.execute()
            virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]

    def ack(self, delivery_tag: str) -> None:
        try:
            super().ack(delivery_tag)  # type: ignore[no-untyped-call]
        except Exception:
            self._let_go(delivery_tag)
            raise

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        try:
            super().reject(delivery_tag, requeue)  # type: ignore[no-untyped-call]
        except Exception:
            self._let_go(delivery_tag)
            raise

    def _let_go(self, delivery_tag: str) -> None:
        # An ack or reject Redis did not take: this process is done with the job, so a
        # lingering holder (worker.celeryapp.holders) must not keep its entry from the
        # sweep. kombu keeps the tag among the delivered ones all the same.
        self.__dict__.setdefault("let_go", set()).add(delivery_tag)

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        # Ack, reject and restore all come here: the holder record goes with the entry.
        pipe = super()._remove_from_indices(delivery_tag, pipe)  # type: ignore[no-untyped-call]
        return pipe.hdel(HOLDER_OF_KEY, delivery_tag)


class EnvelopeRefused(Exception):
    """kombu could not make a message of a popped entry (a key missing, a bad body)."""


class CheckedMessage(virtual.Message):
    # Only this failure dead-letters an entry: an exception raised by the consumer's
    # own callback (Celery's, or a client's reply handler stopping a broadcast early)
    # is theirs, and passes through as in kombu.
    def __init__(self, payload: Any, channel: Any = None, **kwargs: Any) -> None:
        try:
            super().__init__(payload, channel=channel, **kwargs)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise EnvelopeRefused(f"{type(exc).__name__}: {exc}") from exc


class ReconnectSafeChannel(kombu_redis.Channel):
    QoS = SafeQoS
    Message = CheckedMessage
    # Replaced at the worker's start with one that knows its settings and answers task ids.
    guard: ClassVar[EntryGuard] = EntryGuard()
    # Set at the worker's start; without it (not a worker) no holder is recorded and a
    # lost consumer's jobs wait for the visibility timeout, as in kombu.
    holders: ClassVar[Holders | None] = None
    _holder: str | None = None
    # Set at the worker's start: called when a take finds every queue it serves empty.
    on_drained: ClassVar[Callable[[], None] | None] = None

    def __init__(self, connection: Any, *args: Any, **kwargs: Any) -> None:
        # Before super().__init__: opening the channel already reads the settings.
        self._opened_with = connection.client
        super().__init__(connection, *args, **kwargs)  # type: ignore[no-untyped-call]

    def holder_id(self) -> str | None:
        """This channel's holder id, registered (alive in Redis) when it starts consuming a
        queue, or at its first delivery if Redis failed then."""
        if self._holder is None and self.holders is not None:
            self._holder = self.holders.register(self)
        return self._holder

    def basic_consume(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        # A consumer is a holder from the start, not from its first delivery: its holders
        # thread also sweeps, and a fresh worker on an empty queue must sweep what a
        # killed one left. If Redis fails here, the first delivery registers instead.
        try:
            if queue not in self._fanout_queues:  # broadcasts (pidbox) are never unacked
                self.holder_id()
        except self.connection_errors as exc:
            log.debug("holder not registered yet: %r", exc)
        return super().basic_consume(queue, *args, **kwargs)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        try:
            super().close()  # type: ignore[no-untyped-call]  # restores its unacked jobs
        finally:
            if self._holder is not None and self.holders is not None:
                self.holders.closed(self._holder, self)

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

    _popping = "BRPOP"  # the pop in flight (worker.celeryapp.multipop): its command
    _take_next = False  # the last pop found something: the next one is a take

    def _brpop_start(self, timeout: float | None = None) -> None:
        self._popping = multipop.start(self, timeout)
        if self._popping == "BRPOP":
            super()._brpop_start(timeout)  # type: ignore[no-untyped-call]

    def _brpop_read(self, **options: Any) -> bool:
        # kombu 5.7's _brpop_read, reading a take of entries (worker.celeryapp.multipop),
        # each checked before it is decoded.
        try:
            try:
                popped = multipop.read(self, self._popping, **options)
            except self.connection_errors:
                # The next iteration reconnects, as kombu does.
                self.client.connection.disconnect()
                raise
            if not popped:
                raise Empty()
            key, taken = popped
            key = key.decode() if isinstance(key, bytes) else key
            taken = [(r.encode() if isinstance(r, str) else r, tag) for r, tag in taken]
            queue = key.rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
            multipop.deliver_take(self, queue, key, taken)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            flush = getattr(self, "_flush_brpop_reauth", None)  # kombu >= 5.6
            if flush is not None:
                flush()

    def _deliver_checked(self, queue: str, key: str, raw: bytes) -> None:
        payload, problem = self.guard.decode(raw)
        if problem is None:
            problem = self._deliver_or_why(queue, key, raw, payload)
            if problem is None:
                return
        self._dead_letter(queue, key, raw, payload, problem)

    def _dead_letter(self, queue: str, key: str, raw: bytes, payload: Any, problem: str) -> None:
        letter = DeadLetter(queue, key, raw, problem, task_id_of(payload, raw))
        with self.conn_or_acquire() as client:
            self.guard.dead_letter(client, letter)

    def _deliver_or_why(self, queue: str, key: str, raw: bytes, payload: Any) -> str | None:
        """None once the entry is delivered (or put back); else why it is a dead letter."""
        try:
            self.connection._deliver(payload, queue)
        except UnackedWriteFailed:
            with self.conn_or_acquire() as client:
                put_back(lambda: client.rpush(key, raw), queue, raw)
        except EnvelopeRefused as exc:
            return f"kombu refused the envelope: {exc}"[:300]
        except self.connection_errors:
            raise
        except Exception as exc:
            if not self.guard.consumer_errors:
                raise
            # Recorded as unacked already: forget that copy, or it would come back later.
            self._forget(payload["properties"]["delivery_tag"])
            return f"the consumer failed on it: {type(exc).__name__}: {exc}"[:300]
        return None

    def _forget(self, delivery_tag: str) -> None:
        try:
            self.qos.ack(delivery_tag)
        except Exception:  # not recorded after all: nothing to forget
            log.debug("no unacked record of %s to forget", delivery_tag)


class ReconnectSafeSentinelChannel(ReconnectSafeChannel, kombu_redis.SentinelChannel):
    """The same fixes for ``sentinel://`` brokers. kombu's SentinelChannel asks the
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
