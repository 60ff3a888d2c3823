"""inferq: batching inference workers on Celery and Redis."""

__version__ = "0.1.0"
