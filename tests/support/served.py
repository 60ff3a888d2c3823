"""A served model in the test's own process, as a worker loads it, and unloaded after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from inferq.core.settings import Settings
from worker.loading.registry import ModelRegistry, ServedRegressor
from worker.metrics import Metrics


@contextmanager
def served_regressor(settings: Settings) -> Iterator[ServedRegressor]:
    registry = ModelRegistry(settings, Metrics())
    registry.load({"regressor"})
    try:
        yield registry.regressor()
    finally:
        registry.unload()
