"""The finisher's acks: a batch's messages acked in one Redis round trip, not one each.

Celery acks a message by handing a promise to the consumer's event loop, which then
runs kombu's ack: one pipeline (ZREM, HDEL, and the holder's HDEL) per message, and
one hub callback each (docs/benchmarks.md, the per-job budget). ``ack_together``
hands the loop one callback per channel instead, which removes the batch's unacked
records in one pipeline through the channel's own QoS (so every index the channel
keeps goes, the holder record included) and then does kombu's in-memory bookkeeping
for each. It runs where Celery's acks run (the consumer's thread, via the same
``call_soon_ack``), after the answers are stored, so delivery is unchanged: a job is
acked only once its result is stored, and a worker killed before that leaves it
unacked, to be delivered again.

A request this cannot take (not a Redis channel, an ack promise Celery has chained
more work to after a reconnect, anything unexpected) is acked by Celery as before,
and so is every message of a pipeline that fails.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from vine import promise  # type: ignore[import-untyped]

log = logging.getLogger("inferq.acks")

CallSoon = Callable[[Callable[[], None]], Any]


def ack_together(requests: Iterable[Any]) -> None:
    """Ack each request's message: those of one Redis channel together, the rest one by
    one with Celery's ``Request.acknowledge``. Safe from any thread."""
    groups: dict[tuple[int, int], tuple[CallSoon, Any, list[Any]]] = {}
    for req in requests:
        if req.acknowledged:
            continue
        call_soon = _call_soon(req)
        if call_soon is None:
            req.acknowledge()
            continue
        channel = req.message.channel
        key = (id(call_soon.__self__), id(channel))
        groups.setdefault(key, (call_soon, channel, []))[2].append(req)
    for call_soon, channel, reqs in groups.values():
        for req in reqs:
            req.acknowledged = True  # as Request.acknowledge: from now on, this ack's
        messages = [req.message for req in reqs]
        call_soon(functools.partial(_ack_messages, channel, messages))


def _call_soon(req: Any) -> Any:
    """The consumer's ``call_soon_ack`` behind the request's ack promise, when the batch
    can take its message; else None (Celery acks it)."""
    on_ack = getattr(req, "_on_ack", None)
    message = getattr(req, "message", None)
    if not isinstance(on_ack, promise) or message is None:
        return None
    if on_ack._svpending is not None or on_ack._lvpending is not None:
        return None  # after a reconnect Celery chains prefetch restoring to each ack
    if on_ack.args != (message.ack_log_error,) or not hasattr(on_ack.fun, "__self__"):
        return None
    channel = message.channel
    qos = getattr(channel, "qos", None) if channel is not None else None
    if not isinstance(qos, kombu_redis.QoS) or message.acknowledged:
        return None
    return on_ack.fun


def _ack_messages(channel: Any, messages: list[Any]) -> None:
    """On the consumer's thread: the messages' unacked records removed in one pipeline,
    then each message acked in kombu's bookkeeping; one by one if the pipeline fails."""
    qos = channel.qos
    try:
        with qos.pipe_or_acquire() as pipe:
            for message in messages:
                qos._remove_from_indices(message.delivery_tag, pipe)
            pipe.execute()
    except Exception as exc:
        log.warning("acking %d jobs together failed (%s); one by one", len(messages), exc)
        for message in messages:
            # Each through the channel's own ack, as Celery's promise would (which lets
            # go of a job Redis did not take); one's failure is not the others'.
            try:
                message.ack_log_error(log, channel.connection_errors)
            except Exception:
                log.exception("could not ack %s", message.delivery_tag)
        return
    for message in messages:
        # kombu's Redis QoS.ack, less its pipeline: the in-memory bookkeeping.
        virtual.QoS.ack(qos, message.delivery_tag)  # type: ignore[no-untyped-call]
        message._state = "ACK"
