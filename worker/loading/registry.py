"""The models of one worker process, loaded once after fork and kept by kind.

``ModelRegistry.load`` runs in the process that executes jobs (see
worker.celeryapp.lifecycle) and starts one BatchRunner thread per model; jobs look
their model up here. Nothing is loaded at import time.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass

from inferq.core.images import source_short_side
from inferq.core.modelfile import RegressorMeta, file_version, read_meta
from inferq.core.processes import announce
from inferq.core.rows import RowValidator
from inferq.core.settings import Settings
from inferq.errors import ModelUnavailable
from worker.engine.forward import KerasForward
from worker.engine.runner import BatchRunner, ForwardModel, bucket_sizes_for
from worker.loading import devices
from worker.loading.classifier import Labels, Preprocess, check_classifier, load_classifier
from worker.loading.keras_files import check_regressor_shape, load_keras
from worker.metrics import Metrics


@dataclass(frozen=True)
class ServedModel:
    """What every served model has: a compiled forward pass behind a batch runner."""

    kind: str
    name: str
    version: str
    forward: KerasForward
    runner: BatchRunner
    timeout_s: float


@dataclass(frozen=True)
class ServedRegressor(ServedModel):
    meta: RegressorMeta
    validator: RowValidator
    max_chunk_rows: int


@dataclass(frozen=True)
class ServedClassifier(ServedModel):
    preprocess: Preprocess
    labels: Labels
    settings: Settings  # image root and size limits
    min_short_side: int  # JPEGs decode at a reduced size that keeps at least this


def check_files(settings: Settings, kinds: set[str]) -> None:
    """Cheap checks for a parent process: h5py and settings only, no TensorFlow."""
    if "regressor" in kinds:
        read_meta(settings.regressor_path)
    if "classifier" in kinds:
        check_classifier(settings)


class ModelRegistry:
    """The served models of this process, by kind (``regressor``, ``classifier``)."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.devices = devices.UNPROBED  # the start line's device fields, once probed
        self._served: dict[str, ServedModel] = {}
        self._lock = threading.Lock()

    def load(self, kinds: set[str]) -> None:
        """Load ``kinds`` into this process once; a second call loads nothing new."""
        loaders = {"regressor": self._load_regressor, "classifier": self._load_classifier}
        with self._lock:
            if self.devices == devices.UNPROBED and kinds:
                self.devices = devices.configure(self.settings)  # before any model
            for kind in sorted(kinds - self._served.keys()):
                served = self._served[kind] = loaders[kind]()
                self.metrics.model_loaded(kind, served.name, served.version)
                # Printed, not logged: at worker_init Celery has not configured logging yet.
                announce(
                    f"inferq: model loaded: {kind} name={served.name} version={served.version} "
                    f"pid={os.getpid()} buckets={served.forward.bucket_sizes}",
                    sys.__stderr__,
                )

    def holds(self, kind: str) -> bool:
        """Whether this process has loaded a model of ``kind`` (a prefork parent has none)."""
        return kind in self._served

    def regressor(self) -> ServedRegressor:
        served = self._get("regressor")
        assert isinstance(served, ServedRegressor)
        return served

    def classifier(self) -> ServedClassifier:
        served = self._get("classifier")
        assert isinstance(served, ServedClassifier)
        return served

    def versions(self) -> dict[str, dict[str, str]]:
        """Kind -> name and version: the start line and `inferq health` show these."""
        # A copy (one C call under the GIL): the remote-control thread may ask during unload.
        served = self._served.copy()
        return {kind: {"name": s.name, "version": s.version} for kind, s in served.items()}

    def unload(self) -> None:
        with self._lock:
            for served in self._served.values():
                served.runner.stop()
            self._served.clear()

    def _get(self, kind: str) -> ServedModel:
        served = self._served.get(kind)
        if served is None:
            raise ModelUnavailable(f"this worker process has not loaded a {kind}")
        return served

    def _serve(
        self, model: object, kind: str, name: str, version: str, max_rows: int, wait_ms: float
    ) -> tuple[KerasForward, BatchRunner]:
        settings = self.settings
        if settings.mixed_precision:
            # Here, not at file load: the version stays the file's hash, not the rebuilt copy's.
            model = devices.to_mixed_precision(model, name)
        xla = settings.regressor_xla and kind == "regressor"
        # Bulk chunks (score_chunk) run in passes of their own size; image chunks share
        # the stream's. Every bucket up to the larger one is traced now: none later.
        bulk_rows = settings.bulk_batch_size if kind == "regressor" else max_rows
        buckets = tuple(sorted({*bucket_sizes_for(max_rows), *bucket_sizes_for(bulk_rows)}))
        forward = KerasForward(model, name, version, buckets, jit_compile=xla)
        runner = BatchRunner(
            _with_drills(forward, settings),
            max_rows,
            wait_ms / 1000,
            bulk_batch_rows=bulk_rows,
            bulk_max_delay_s=settings.bulk_max_delay_ms / 1000,
            retries=settings.inference_retries,
            backoff_s=settings.retry_backoff_ms / 1000,
            observer=self.metrics.for_model(name),
        )
        return forward, runner.start()

    def _load_regressor(self) -> ServedRegressor:
        settings, path = self.settings, self.settings.regressor_path
        meta = read_meta(path)
        keras_model = load_keras(path)
        check_regressor_shape(keras_model, len(meta.features), path)
        version = file_version(path)
        forward, runner = self._serve(
            keras_model, "regressor", meta.name, version, settings.max_batch_size,
            settings.max_wait_ms,
        )  # fmt: skip
        validator = RowValidator(meta.features, settings.max_rows_per_job)
        return ServedRegressor(
            "regressor", meta.name, version, forward, runner, settings.inference_timeout_s,
            meta, validator, settings.max_chunk_rows,
        )  # fmt: skip

    def _load_classifier(self) -> ServedClassifier:
        settings = self.settings
        loaded = load_classifier(settings)
        forward, runner = self._serve(
            loaded.keras_model, "classifier", loaded.name, loaded.version,
            settings.vision_max_batch_size, settings.vision_max_wait_ms,
        )  # fmt: skip
        return ServedClassifier(
            "classifier", loaded.name, loaded.version, forward, runner,
            settings.inference_timeout_s, loaded.preprocess, loaded.labels, settings,
            source_short_side(loaded.input_size),
        )  # fmt: skip


def _with_drills(forward: ForwardModel, settings: Settings) -> ForwardModel:
    """The forward pass, failing on purpose under INFERQ_CHAOS_FORWARD_FAILURES (a drill);
    the drill code is imported only then, never by a worker that serves for real."""
    if not settings.chaos_forward_failures:
        return forward
    from worker.drills import FlakyForward

    return FlakyForward(forward, settings.chaos_forward_failures)
