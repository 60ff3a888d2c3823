"""Task events of a take sent as one message.

Celery's worker buffers task events and sends them once per event-loop tick, as one
message Flower and every event receiver read (``task.multi``), but also whenever 24
are buffered. A take (worker.celeryapp.multipop) hands up to 64 jobs to one tick,
three events each (received, started, succeeded): up to eight PUBLISHes per tick,
each an encode and a Redis round trip on the consumer thread, where one does. Events
still leave at the end of every tick, so a monitor sees them as soon as before.
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps

from worker.celeryapp.multipop import MAX_TAKE

EVENTS_PER_TAKE = 4 * MAX_TAKE  # received + started per job of a take, succeeded of others


class EventsPerTake(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer step: raises the event dispatcher's buffer limit (set again after each
    reconnect, when Celery's Events step builds a new dispatcher)."""

    requires = ("celery.worker.consumer.events:Events",)

    def start(self, c: Any) -> None:
        dispatcher = c.event_dispatcher
        if dispatcher is not None and dispatcher.buffer_limit < EVENTS_PER_TAKE:
            dispatcher.buffer_limit = EVENTS_PER_TAKE
