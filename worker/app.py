"""The Celery application of the workers.

Settings are read when Celery first needs its configuration (the worker's
start-up), not when this module is imported.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import Celery

from inferq.celery_config import celery_config
from inferq.settings import Settings, SettingsError
from worker import channel
from worker.arguments import InferqTask

# TensorFlow's C++ start-up chatter (CUDA probing, CPU flags) hides real log lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _config() -> dict[str, Any]:
    try:
        return celery_config(Settings.load())
    except SettingsError as exc:
        print(f"inferq: invalid settings: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def create_app() -> Celery:
    channel.install()  # kombu's Redis channel, fixed (see the module)
    # InferqTask: a job with unknown or missing arguments gets a typed InvalidInput.
    app = Celery("inferq", task_cls=InferqTask)
    app.add_defaults(_config)
    return app


app = create_app()
