"""inferq workers: ``celery -A worker worker -Q regression`` or ``inferq worker``."""

from worker import bench_tasks, bulk_tasks, signals, tasks  # noqa: F401  (registers tasks, hooks)
from worker.app import app

__all__ = ["app"]
