"""The jobs of the Celery conformance suite (tests/e2e/test_celery_semantics.py): one per
task and worker path, as a plain Celery client builds them, and the workers serving them.

Paths: ``fast`` (a threads worker's direct path: a small job, sent plainly), ``pool``
(the same worker's pool threads: a predict job bigger than one batch, an image job
with an ETA; score_chunk always takes it) and ``prefork`` (a worker whose children
hold the models and run Celery's tracer).
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from celery import Celery, Signature
from celery.result import AsyncResult

from inferq.core.chunks import encode_matrix
from inferq.core.constants import (
    CLASSIFY_CHUNK_TASK,
    CLASSIFY_TASK,
    COURSE_FEATURES,
    PREDICT_TASK,
    SCORE_CHUNK_TASK,
)
from tests.support import photos
from tests.support.delivery import rows
from tests.support.echo_app import ECHO_TASK
from tests.support.harness import E2E_MAX_BATCH

ECHO_QUEUE = "test-semantics-echo"
PREFORK_REGRESSION = "test-semantics-prefork-regression"
PREFORK_VISION = "test-semantics-prefork-vision"
IMAGE_POOL_COUNTDOWN_S = 0.2  # an ETA sends an image job to the pool
REGRESSION_TASKS = (PREDICT_TASK, SCORE_CHUNK_TASK)
# The argument bad_kwargs spoils in each task's job: the typed error names it.
BAD_FIELD = {
    PREDICT_TASK: "unit_price",
    CLASSIFY_TASK: "top_k",
    CLASSIFY_CHUNK_TASK: "top_k",
    SCORE_CHUNK_TASK: "compression",
}

GAMES = rows(E2E_MAX_BATCH + 1)
PHOTO_B64 = base64.b64encode(photos.photo("chelsea")).decode()


@dataclass(frozen=True)
class Case:
    """One task on one path."""

    task: str
    path: str  # fast | pool | prefork

    @property
    def name(self) -> str:
        return f"{self.task.removeprefix('inferq.')}-{self.path}"


CASES = [
    *(Case(task, path) for task in (PREDICT_TASK, CLASSIFY_TASK, CLASSIFY_CHUNK_TASK)
      for path in ("fast", "pool", "prefork")),
    Case(SCORE_CHUNK_TASK, "pool"),  # no direct path: every chunk takes the pool
    Case(SCORE_CHUNK_TASK, "prefork"),
]  # fmt: skip


def job_kwargs(case: Case) -> dict[str, Any]:
    """Good arguments for the case's task on its path."""
    if case.task == PREDICT_TASK:
        # More rows than one batch: the direct path hands the job to the pool.
        return {"rows": GAMES if case.path == "pool" else GAMES[0]}
    if case.task == CLASSIFY_TASK:
        return {"image_b64": PHOTO_B64, "top_k": 2}
    if case.task == CLASSIFY_CHUNK_TASK:
        return {"images": [{"image_b64": PHOTO_B64}] * 2, "top_k": 2}
    x = np.array([[game[f] for f in COURSE_FEATURES] for game in GAMES[:3]])
    return {
        "chunk_id": uuid.uuid4().hex,
        "features": list(COURSE_FEATURES),
        "rows": len(x),
        "data": encode_matrix(x),
        "compression": "zlib",
    }


def bad_kwargs(case: Case) -> dict[str, Any]:
    """The case's arguments with one value the worker refuses, on the same path."""
    kwargs = job_kwargs(case)
    if case.task == PREDICT_TASK:
        rows = kwargs["rows"]
        first = {**(rows[0] if isinstance(rows, list) else rows), "unit_price": "free"}
        kwargs["rows"] = [first, *rows[1:]] if isinstance(rows, list) else first
    elif case.task in (CLASSIFY_TASK, CLASSIFY_CHUNK_TASK):
        kwargs[BAD_FIELD[case.task]] = "many"
    else:
        kwargs[BAD_FIELD[case.task]] = "no-such-codec"
    return kwargs


@dataclass
class Served:
    """A case with the app that sends it, its Redis list and the worker's node name."""

    case: Case
    app: Celery
    queue: str
    node: str
    options: dict[str, Any] = field(default_factory=dict)

    def sig(self, *, bad: bool = False, **options: Any) -> Signature:
        """The case's job; ``bad``: with a value the worker refuses (InvalidInput, on every
        path). A value, not an unknown argument: once the worker's tasks are imported in
        the test process, Celery's shared tasks are on this app too, and its client-side
        signature check would refuse an unknown argument before anything is sent."""
        kwargs = bad_kwargs(self.case) if bad else job_kwargs(self.case)
        merged = {"queue": self.queue, **self.options, **options}
        if "eta" in options:  # a job's own ETA replaces the path's countdown
            merged.pop("countdown", None)
        return self.app.signature(self.case.task, kwargs=kwargs, **merged)

    def echo(self) -> tuple[Signature, AsyncResult]:
        """A ``tests.echo`` signature, and its result: its id is fixed before it is sent."""
        sig = self.app.signature(ECHO_TASK, queue=ECHO_QUEUE)
        return sig, sig.freeze()


def path_options(case: Case) -> dict[str, Any]:
    image = case.task in (CLASSIFY_TASK, CLASSIFY_CHUNK_TASK)
    return {"countdown": IMAGE_POOL_COUNTDOWN_S} if image and case.path == "pool" else {}
