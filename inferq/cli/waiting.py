"""While a command waits for workers: say so when none serves its queue, and keep waiting.

`inferq predict`, `classify`, `score` and `score-images` wait for answers; with no
worker on the queue they used to wait out their timeout in silence. A watcher thread
asks the workers (the `inferq_health` broadcast) once the command has waited a few
seconds, and if none consumes the queue with its model, says on stderr which queue
and the command that starts a worker. The command keeps waiting, so a worker started
meanwhile (an autoscaler scaling from zero) still answers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import click

from inferq.core.routing import QUEUE_MODELS, redis_queue
from inferq.core.settings import Settings
from inferq.ops.health import collect, serving

NOTICE_AFTER_S = 3.0
ASK_TIMEOUT_S = 1.0
# The commands' jobs are sent again this long after, if Redis has lost them (a worker
# killed as it took one): only then, so a queue that is merely long is not copied.
RESEND_AFTER_S = 30.0


@contextmanager
def watching(settings: Settings, logical_queue: str) -> Iterator[None]:
    """Run the block; past NOTICE_AFTER_S, say so if no worker serves ``logical_queue``."""
    done = threading.Event()
    watcher = threading.Thread(
        target=_watch, args=(settings, logical_queue, done), name="inferq-watch", daemon=True
    )
    watcher.start()
    try:
        yield
    finally:
        done.set()


def _watch(settings: Settings, logical_queue: str, done: threading.Event) -> None:
    if done.wait(NOTICE_AFTER_S):
        return
    queue, kind = redis_queue(logical_queue, settings), QUEUE_MODELS[logical_queue]
    try:
        reports = collect(settings, {queue: kind}, ASK_TIMEOUT_S)
    except Exception:  # the broker itself is unreachable: the command will say so
        return
    if serving(queue, kind, reports) is None and not done.is_set():
        click.echo(
            f"inferq: no worker serves queue {queue} yet (start one: "
            f"inferq worker --queues {logical_queue}); still waiting",
            err=True,
        )
