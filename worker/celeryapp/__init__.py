"""Celery, adapted: the app and its settings, the tasks, the direct path that skips the
pool, the finisher that stores and acks, the worker's life cycle, refused messages, and
kombu's Redis channel fixed."""
