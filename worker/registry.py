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

from inferq.errors import ModelUnavailable
from inferq.features import RowValidator
from inferq.modelfile import RegressorMeta, file_version, read_meta
from inferq.procutil import announce
from inferq.settings import Settings
from worker import devices, metrics
from worker.chaos import FlakyForward
from worker.classifier import Labels, Preprocess, check_classifier, load_classifier
from worker.keras_forward import KerasForward, check_regressor_shape, load_keras
from worker.runner import BatchRunner, bucket_sizes_for


@dataclass(frozen=True)
class Served:
    """What every served model has: a compiled forward pass behind a batch runner."""

    name: str
    version: str
    forward: KerasForward
    runner: BatchRunner
    timeout_s: float


@dataclass(frozen=True)
class ServedRegressor(Served):
    meta: RegressorMeta
    validator: RowValidator
    max_chunk_rows: int


@dataclass(frozen=True)
class ServedClassifier(Served):
    preprocess: Preprocess
    labels: Labels
    settings: Settings  # image root and size limits


_lock = threading.Lock()
_served: dict[str, Served] = {}


def check_files(settings: Settings, models: set[str]) -> None:
    """Cheap checks for a parent process: h5py and settings only, no TensorFlow."""
    if "regressor" in models:
        read_meta(settings.regressor_path)
    if "classifier" in models:
        check_classifier(settings)


def _serve(
    settings: Settings,
    model: object,
    name: str,
    version: str,
    max_rows: int,
    max_wait_ms: float,
    jit_compile: bool = False,
) -> tuple[KerasForward, BatchRunner]:
    if settings.mixed_precision:
        # Here, not at file load: the version stays the file's hash, not the rebuilt copy's.
        model = devices.to_mixed_precision(model, name)
    buckets = bucket_sizes_for(max_rows)
    forward = KerasForward(model, name, version, buckets, jit_compile=jit_compile)
    failures = settings.chaos_forward_failures
    runner = BatchRunner(
        FlakyForward(forward, failures) if failures else forward,
        max_rows,
        max_wait_ms / 1000,
        retries=settings.inference_retries,
        backoff_s=settings.retry_backoff_ms / 1000,
    )
    return forward, runner.start()


def load_regressor(settings: Settings) -> ServedRegressor:
    path = settings.regressor_path
    meta = read_meta(path)
    keras_model = load_keras(path)
    check_regressor_shape(keras_model, len(meta.features), path)
    version = file_version(path)
    forward, runner = _serve(
        settings,
        keras_model,
        meta.name,
        version,
        settings.max_batch_size,
        settings.max_wait_ms,
        jit_compile=settings.regressor_xla,
    )
    validator = RowValidator(meta.features, settings.max_rows_per_job)
    return ServedRegressor(
        meta.name,
        version,
        forward,
        runner,
        settings.inference_timeout_s,
        meta,
        validator,
        settings.max_chunk_rows,
    )


def load_vision(settings: Settings) -> ServedClassifier:
    loaded = load_classifier(settings)
    forward, runner = _serve(
        settings,
        loaded.keras_model,
        loaded.name,
        loaded.version,
        settings.vision_max_batch_size,
        settings.vision_max_wait_ms,
    )
    return ServedClassifier(
        loaded.name,
        loaded.version,
        forward,
        runner,
        settings.inference_timeout_s,
        loaded.preprocess,
        loaded.labels,
        settings,
    )


def load(settings: Settings, models: set[str]) -> None:
    """Load ``models`` into this process once; a second call loads nothing new."""
    loaders = {"regressor": load_regressor, "classifier": load_vision}
    with _lock:
        devices.configure(settings)  # before the first model touches a GPU
        for kind in sorted(models - _served.keys()):
            served = _served[kind] = loaders[kind](settings)
            metrics.model_loaded(kind, served.name, served.version)
            # Printed, not logged: at worker_init Celery has not configured logging yet.
            announce(
                f"inferq: model loaded: {kind} name={served.name} version={served.version} "
                f"pid={os.getpid()} buckets={served.forward.bucket_sizes}",
                sys.__stderr__,
            )


def _get(kind: str) -> Served:
    served = _served.get(kind)
    if served is None:
        raise ModelUnavailable(f"this worker process has not loaded a {kind}")
    return served


def holds(kind: str) -> bool:
    """Whether this process has loaded a model of ``kind`` (a prefork parent has none)."""
    return kind in _served


def regressor() -> ServedRegressor:
    served = _get("regressor")
    assert isinstance(served, ServedRegressor)
    return served


def classifier() -> ServedClassifier:
    served = _get("classifier")
    assert isinstance(served, ServedClassifier)
    return served


def loaded() -> dict[str, str]:
    """Model name -> version, for start-up lines and health checks."""
    return {s.name: s.version for s in _served.values()}


def served_models() -> dict[str, dict[str, str]]:
    """Kind (regressor, classifier) -> name and version: what `inferq health` asks for."""
    # A copy (one C call under the GIL): the remote-control thread may ask during unload.
    return {kind: {"name": s.name, "version": s.version} for kind, s in _served.copy().items()}


def unload() -> None:
    with _lock:
        for served in _served.values():
            served.runner.stop()
        _served.clear()
