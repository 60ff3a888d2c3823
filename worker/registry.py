"""The models of this worker process, loaded once after fork and kept by name.

``load`` runs in the process that executes tasks (see worker.signals) and
starts one BatchRunner thread per model; tasks look their model up here.
Nothing is loaded at import time.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from inferq.errors import ModelFileError, ModelUnavailable
from inferq.features import RowValidator
from inferq.modelfile import RegressorMeta, file_version, read_meta
from inferq.settings import Settings
from worker.keras_forward import KerasForward, load_keras
from worker.runner import BatchRunner, bucket_sizes_for


@dataclass(frozen=True)
class ServedRegressor:
    meta: RegressorMeta
    version: str
    validator: RowValidator
    forward: KerasForward
    runner: BatchRunner
    timeout_s: float


_lock = threading.Lock()
_served: dict[str, ServedRegressor] = {}


def check_regressor_file(path: Path) -> RegressorMeta:
    """Cheap check for a parent process: HDF5 and metadata readable, no TensorFlow."""
    return read_meta(path)


def load_regressor(settings: Settings) -> ServedRegressor:
    path = settings.regressor_path
    meta = read_meta(path)
    keras_model = load_keras(path)
    shape_in, shape_out = tuple(keras_model.input_shape), tuple(keras_model.output_shape)
    if shape_in != (None, len(meta.features)) or shape_out != (None, 1):
        raise ModelFileError(
            f"model {path} maps {shape_in} -> {shape_out}; its metadata needs "
            f"(None, {len(meta.features)}) -> (None, 1)"
        )
    version = file_version(path)
    buckets = bucket_sizes_for(settings.max_batch_size)
    forward = KerasForward(keras_model, meta.name, version, buckets)
    runner = BatchRunner(forward, settings.max_batch_size, settings.max_wait_ms / 1000).start()
    validator = RowValidator(meta.features, settings.max_rows_per_job)
    return ServedRegressor(meta, version, validator, forward, runner, settings.inference_timeout_s)


def load(settings: Settings, models: set[str]) -> None:
    """Load ``models`` into this process once; a second call loads nothing new."""
    with _lock:
        if "regressor" in models and "regressor" not in _served:
            _served["regressor"] = load_regressor(settings)
            served = _served["regressor"]
            # Printed, not logged: at worker_init Celery has not configured logging yet.
            print(
                f"inferq: model loaded: name={served.meta.name} version={served.version} "
                f"pid={os.getpid()} buckets={served.forward.bucket_sizes}",
                file=sys.__stderr__,
                flush=True,
            )


def regressor() -> ServedRegressor:
    served = _served.get("regressor")
    if served is None:
        raise ModelUnavailable("this worker process has not loaded the regressor")
    return served


def loaded() -> dict[str, str]:
    """Model name -> version, for start-up lines and health checks."""
    return {name: s.version for name, s in _served.items()}


def unload() -> None:
    with _lock:
        for served in _served.values():
            served.runner.stop()
        _served.clear()
