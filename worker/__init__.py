"""inferq workers: ``celery -A worker worker -Q regression`` or ``inferq worker``.

Everything here runs inside a worker process. Its rooms, from the bottom up:
``engine`` (batch queue, runner, compiled forward pass; no Celery), ``loading``
(model files to served models), ``jobs`` (one body per task; no Celery), and
``celeryapp`` (the app, tasks, direct path, finisher, life cycle, refusals).
"""

from worker.celeryapp.app import create_app

app = create_app()

__all__ = ["app"]
