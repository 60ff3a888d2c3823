"""The workers' Celery application: its settings, read once, and its task class.

Settings are read when Celery first needs its configuration (the worker's start-up),
not when this module is imported; `inferq worker` hands its own (with the command
line's overrides) to ``use_settings`` before that.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery, Task
from pydantic import BaseModel

from inferq.core import exit_codes
from inferq.core.celery_config import celery_config
from inferq.core.settings import Settings, SettingsError
from inferq.errors import InvalidInput
from worker.celeryapp import channel, direct, event_buffer, lifecycle, refusal, tasks
from worker.celeryapp.state import WorkerState
from worker.jobs.checks import argument_errors

# TensorFlow's C++ start-up chatter (CUDA probing, CPU flags) hides real log lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class InferqTask(Task):  # type: ignore[misc]
    """The workers' task class: a job's arguments are checked against its payload model
    before the body runs, so a bad one is a typed InvalidInput."""

    payload: type[BaseModel] | None = None

    def before_start(self, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        # Celery runs this inside the task's own error handling: what it raises is
        # stored as the job's result like an error of the body.
        if self.payload is None:
            return
        errors = argument_errors(self.payload, args, kwargs)
        if errors:
            raise InvalidInput.with_errors(f"{len(errors)} invalid argument(s)", errors)


class InferqCelery(Celery):  # type: ignore[misc]
    """Celery, with inferq's settings (read once per process) and the process's state."""

    def __init__(self) -> None:
        super().__init__("inferq", task_cls=InferqTask)
        self._settings: Settings | None = None
        # Built at the worker's start-up (worker.celeryapp.lifecycle); None elsewhere.
        self.state: WorkerState | None = None
        self.add_defaults(lambda: celery_config(self.settings))

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = Settings.load()
            except SettingsError as exc:
                print(f"inferq: invalid settings: {exc}", file=sys.stderr)
                raise SystemExit(exit_codes.USAGE) from None
        return self._settings

    def use_settings(self, settings: Settings) -> None:
        """Serve with ``settings`` (a command line's) rather than the environment's."""
        if self.configured:
            raise RuntimeError("the worker's Celery configuration was read already")
        self._settings = settings


def create_app() -> InferqCelery:
    channel.install()  # kombu's Redis channel, fixed (see the module)
    app = InferqCelery()
    tasks.register(app)
    app.steps["consumer"].add(direct.DrainDirectJobs)
    app.steps["consumer"].add(event_buffer.EventsPerTake)
    refusal.install(app)
    lifecycle.install(app)
    return app
