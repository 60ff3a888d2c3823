"""Everything one worker process holds, in one object built at start-up.

The life cycle (worker.celeryapp.lifecycle) builds a ``WorkerState`` once per
process, from the settings the app read once, and hangs it on the app; tasks,
the direct path, the finisher, refused messages and the health command all reach
it through the app Celery hands them. Nothing else keeps process state.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from inferq.core.settings import Settings
from worker.celeryapp.finisher import Finisher, HeldJob
from worker.jobs.decoding import DecodeBudget, DecodeStage
from worker.jobs.image_source import BlobReader
from worker.loading.registry import ModelRegistry
from worker.metrics import Metrics

log = logging.getLogger("inferq.jobs")


@dataclass
class WorkerState:
    settings: Settings
    metrics: Metrics
    models: ModelRegistry
    kinds: frozenset[str]  # the models this worker's queues need
    decode_budget: DecodeBudget  # what images being decoded may hold, on every path
    metrics_port: int | None = None  # the port bound (INFERQ_METRICS_PORT=0 picks one)
    read_blob: BlobReader | None = None  # images producers stored in Redis (blobs.py)
    _finisher: Finisher | None = field(default=None, repr=False)
    _decoder: DecodeStage | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def build(cls, settings: Settings, kinds: set[str]) -> WorkerState:
        metrics = Metrics()
        budget = DecodeBudget(settings.decode_budget_mb * 2**20)
        return cls(settings, metrics, ModelRegistry(settings, metrics), frozenset(kinds), budget)

    def finisher(self) -> Finisher:
        """This process's one finisher, started on first use (by the consumer thread).
        Celery builds new strategies at every reconnect; they share it, so jobs held
        across a reconnect are answered and drained by the same thread."""
        with self._lock:
            if self._finisher is None:
                self._finisher = Finisher(self.record)
            return self._finisher

    def decoder(self) -> DecodeStage:
        """This process's decode stage for direct image jobs, started on first use. Up to
        four batches of decoded images may wait for the model: enough to keep it fed,
        few enough that fast decoding cannot pile tensors up in memory."""
        with self._lock:
            if self._decoder is None:
                settings = self.settings
                waiting = 4 * settings.vision_max_batch_size
                self._decoder = DecodeStage(settings.effective_decode_threads, waiting)
            return self._decoder

    def queues_drained(self) -> None:
        """The broker has no more jobs for this worker now (worker.celeryapp.multipop):
        the regressor's stream batch goes without waiting out its max wait, since no job
        can join it. Not the classifier's: its jobs reach the batch queue only after
        decoding, so a batch there may still be joined by images the drained queue gave."""
        if self.settings.flush_when_drained and self.models.holds("regressor"):
            self.models.regressor().runner.queue.flush_stream()

    def drain(self, timeout_s: float) -> int:
        """Answer every job the finisher holds; the number left unanswered at ``timeout_s``."""
        return self._finisher.drain(timeout_s) if self._finisher is not None else 0

    def record(self, job: HeldJob) -> None:
        """A direct job's count and log line, once its answer is stored."""
        request = job.request
        self.record_job(request.name, request.id, job.model, job.outcome(), job.elapsed_s())

    def record_job(
        self, task: str, job_id: str | None, model: str, outcome: str, elapsed_s: float
    ) -> None:
        """One count and one log line of fixed shape per job, whichever path ran it."""
        self.metrics.job_done(task, model, outcome, elapsed_s)
        log.info(
            "job=%s task=%s model=%s outcome=%s elapsed_ms=%.1f",
            job_id,
            task,
            model,
            outcome,
            elapsed_s * 1000,
        )
