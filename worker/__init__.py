"""inferq workers: ``celery -A worker worker -Q regression`` or ``inferq worker``."""

from worker import (  # noqa: F401  (registers tasks, hooks, the drain step)
    bench_tasks,
    bulk_tasks,
    direct,
    signals,
    tasks,
)
from worker.app import app

__all__ = ["app"]
