"""A Celery app of one task, ``tests.echo``, that returns its first argument: the target
of the canvas (link, link_error, chain, chord bodies) in tests/e2e/test_celery_semantics.py.

Its result is what Celery handed it: a link's or chain step's parent result, a chord's
list of header results, or a link_error's failed task id (Celery's old-style errback
call, for a task that is not registered in the failing worker). Started as
``celery -A tests.support.echo_app worker``; it writes INFERQ_READY_FILE once it consumes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import Celery, signals

ECHO_TASK = "tests.echo"

app = Celery("inferq-tests-echo", set_as_current=False)
app.conf.update(
    broker_url=os.environ.get("INFERQ_REDIS_URL"),
    result_backend=os.environ.get("INFERQ_REDIS_URL"),
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)


@app.task(name=ECHO_TASK)
def echo(value: Any = None, *_: Any) -> Any:
    return value


@signals.worker_ready.connect
def _ready(sender: Any = None, **_: Any) -> None:
    ready_file = os.environ.get("INFERQ_READY_FILE")
    if ready_file:
        Path(ready_file).write_text("ready\n")
