"""While a command waits for workers: say so when none serves its queue, and keep waiting.

`inferq predict`, `classify`, `score` and `score-images` wait for answers; with no
worker on the queue they used to wait out their timeout in silence. A watcher thread
asks the workers (the `inferq_health` broadcast) once the command has waited a few
seconds, then every CHECK_EVERY_S while it runs (CHECK_UNSERVED_S while none serves).
If none consumes the queue with its model, it says on stderr which queue and the
command that starts a worker (once a worker had served, only after two checks in a
row found none: one missed reply may be a busy worker), again every REPEAT_S while
none does (the only worker stopped mid-run: the run is not silent for minutes), and
says when a worker serves again. The command keeps waiting, so a worker started
meanwhile (an autoscaler scaling from zero) still answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import click

from inferq.core.routing import QUEUE_MODELS, redis_queue
from inferq.core.settings import Settings
from inferq.ops.health import NodeReport, collect, serving

NOTICE_AFTER_S = 3.0
CHECK_EVERY_S = 10.0  # one broadcast: a served queue answers it in milliseconds
# While no worker serves, look more often: a worker that comes back is then reported
# at once (and the command has nothing else to do).
CHECK_UNSERVED_S = 2.0
REPEAT_S = 30.0
ASK_TIMEOUT_S = 1.0
# The commands' jobs are sent again this long after, if Redis has lost them (a worker
# killed as it took one): only then, so a queue that is merely long is not copied.
RESEND_AFTER_S = 30.0


@contextmanager
def watching(settings: Settings, logical_queue: str) -> Iterator[None]:
    """Run the block; past NOTICE_AFTER_S, say so while no worker serves ``logical_queue``."""
    done = threading.Event()
    watcher = threading.Thread(
        target=_watch, args=(settings, logical_queue, done), name="inferq-watch", daemon=True
    )
    watcher.start()
    try:
        yield
    finally:
        done.set()


@dataclass
class _Notices:
    """What the watcher has said about one queue, and the line a new check calls for."""

    queue: str
    logical_queue: str
    ever_served: bool = False
    unserved_since: float | None = None  # when a check first found no worker, this time
    said_at: float | None = None  # the last notice of this time without a worker

    def seen(self, server: NodeReport | None, now: float) -> str | None:
        """The line to print after a check that found ``server`` (or none), if any."""
        if server is not None:
            said, self.ever_served = self.said_at is not None, True
            self.unserved_since = self.said_at = None
            return f"inferq: worker {server.node} serves queue {self.queue} again" if said else None
        if self.unserved_since is None:
            self.unserved_since = now
            if self.ever_served:  # one missed reply may be a busy worker: ask once more
                return None
        if self.said_at is not None and now - self.said_at < REPEAT_S:
            return None
        start = f"start one: inferq worker --queues {self.logical_queue}"
        if self.said_at is not None:
            waited_s = now - self.unserved_since
            line = f"still no worker serves queue {self.queue} ({waited_s:.0f} s; {start})"
        elif self.ever_served:
            line = f"no worker serves queue {self.queue} any more ({start})"
        else:
            line = f"no worker serves queue {self.queue} yet ({start})"
        self.said_at = now
        return f"inferq: {line}; still waiting"


def _watch(settings: Settings, logical_queue: str, done: threading.Event) -> None:
    queue, kind = redis_queue(logical_queue, settings), QUEUE_MODELS[logical_queue]
    notices = _Notices(queue, logical_queue)
    wait_s = NOTICE_AFTER_S
    while not done.wait(wait_s):
        try:
            reports = collect(settings, {queue: kind}, ASK_TIMEOUT_S)
        except Exception:  # the broker itself is unreachable: the command will say so
            continue
        line = notices.seen(serving(queue, kind, reports), time.monotonic())
        wait_s = CHECK_EVERY_S if notices.unserved_since is None else CHECK_UNSERVED_S
        if line is not None and not done.is_set():
            click.echo(line, err=True)
