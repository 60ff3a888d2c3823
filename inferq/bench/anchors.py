"""The anchors of `inferq bench stream` by name: the celery-batches task a Celery user
writes and a no-op, both in a plain Celery app in the solo pool
(inferq.bench.batches_app), and the settings they run with.

Kept apart from the app itself, which imports celery-batches (a development
dependency, installed by dev.py): a missing one is then one line, not a traceback.
"""

from __future__ import annotations

import importlib.util
from typing import Any

ANCHOR_APP = "inferq.bench.batches_app"
BATCHES_PREDICT_TASK = "inferq.bench.batches_predict"
FLUSH_EVERY = 64
FLUSH_INTERVAL_S = 0.005
PREFETCH_MULTIPLIER = 128
POOL = "solo"
# Who sends the jobs: a plain Celery client (send_task, .get()), or inferq's Client.
CLIENTS = ("celery", "inferq")

# What such a user configures: Celery's defaults but JSON, and the prefetch multiplier
# celery-batches needs to fill a batch. Recorded beside the figures.
ANCHOR_CONFIG: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "worker_prefetch_multiplier": PREFETCH_MULTIPLIER,
}


def anchor_settings() -> dict[str, Any]:
    """The anchors' configuration, for the benchmark's JSON."""
    batches = {"flush_every": FLUSH_EVERY, "flush_interval_s": FLUSH_INTERVAL_S}
    return {"pool": POOL, **ANCHOR_CONFIG, "celery_batches": batches}


def missing_celery_batches() -> str | None:
    """Why the anchors cannot run here, or None when they can."""
    if importlib.util.find_spec("celery_batches") is None:
        return "celery-batches is not installed (`python3.11 dev.py` installs it)"
    return None
