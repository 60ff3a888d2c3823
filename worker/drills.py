"""Fault drills: make a model's forward pass fail on purpose.

``INFERQ_CHAOS_FORWARD_FAILURES=N`` makes the first N forward passes of each
model raise, as a device or allocator hiccup would, so the retry path (and the
typed error after the last retry) can be rehearsed on real workers. Off (0) by
default; meant for tests and drills, never for serving.
"""

from __future__ import annotations

import threading

import numpy as np

from worker.engine.runner import ForwardModel


class ChaosFailure(RuntimeError):
    """An injected forward-pass failure."""


class FlakyForward:
    """``model`` whose first ``failures`` forward passes raise ChaosFailure."""

    def __init__(self, model: ForwardModel, failures: int) -> None:
        self.model = model
        self.name = model.name
        self.version = model.version
        self.bucket_sizes = model.bucket_sizes
        self.remaining = failures
        self._lock = threading.Lock()

    def forward(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            fail, self.remaining = self.remaining > 0, max(self.remaining - 1, 0)
        if fail:
            raise ChaosFailure("injected forward-pass failure (INFERQ_CHAOS_FORWARD_FAILURES)")
        return self.model.forward(batch)
