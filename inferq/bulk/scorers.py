"""Who computes a bulk chunk: the workers through Redis, or this process.

Both give, for a chunk's valid rows, one dollar value per row and the errors
of rows the model side refused. The in-process scorer is the benchmark's
baseline (and a way to check the queue path's output byte for byte).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inferq.bulk.wire import decode_results
from inferq.contract import ScoreChunkResult
from producer.client import Client, Handle

RowErrors = dict[int, str]


class Scorer(Protocol):
    features: list[str]
    version: str

    def submit(self, chunk_id: str, x: np.ndarray) -> Any:
        """Start scoring ``x`` (rows x features, raw values in ``features`` order)."""
        ...

    def collect(self, ticket: Any, rows: int) -> tuple[np.ndarray, RowErrors]:
        """Dollars per row (NaN where refused) and the refused rows' errors."""
        ...

    def release(self, ticket: Any) -> None:
        """The chunk's output is safely on disk: drop what is kept for it."""
        ...


class QueueScorer:
    def __init__(
        self,
        client: Client,
        chunk_timeout_s: float,
        *,
        reuse_stored: bool,
        resend_after_s: float = 120.0,
    ) -> None:
        info = client.regressor_info()
        self.client = client
        self.features = list(info.features)
        self.version = info.model.version
        self.chunk_timeout_s = chunk_timeout_s
        self.reuse_stored = reuse_stored
        self.resend_after_s = resend_after_s

    def submit(self, chunk_id: str, x: np.ndarray) -> Handle[ScoreChunkResult]:
        # A resumed run first looks for a result the interrupted run's workers stored:
        # the chunk id includes the model version, so a stored result is the same answer.
        stored = self.client.stored_chunk(chunk_id) if self.reuse_stored else None
        return stored or self.client.submit_chunk(chunk_id, self.features, x)

    def collect(self, ticket: Handle[ScoreChunkResult], rows: int) -> tuple[np.ndarray, RowErrors]:
        # Unanswered after resend_after_s, the chunk is sent again under its id: the
        # broker can lose a message with a killed worker (README, "Delivery guarantees").
        result = ticket.wait(self.chunk_timeout_s, resend_after_s=self.resend_after_s)
        values = decode_results(result.earnings_usd_f64, rows)
        errors = {
            e.row: f"{e.code}: {e.field}: {e.message}"
            for e in result.row_errors
            if e.row is not None
        }
        return values, errors

    def release(self, ticket: Handle[ScoreChunkResult]) -> None:
        ticket.forget()


class LocalScorer:
    """The model in this process: one compiled (XLA) function on ``batch_rows`` rows."""

    def __init__(self, model_path: Path, batch_rows: int = 8192) -> None:
        from inferq.modelfile import file_version, read_meta
        from worker.keras_forward import KerasForward, load_keras

        self.meta = read_meta(model_path)
        self.features = list(self.meta.features)
        self.version = file_version(model_path)
        self.batch_rows = batch_rows
        model = load_keras(model_path)
        self.forward = KerasForward(model, "local", self.version, (batch_rows,), jit_compile=True)

    def submit(self, chunk_id: str, x: np.ndarray) -> np.ndarray:
        scaled = self.meta.scale_features(x).astype(np.float32)
        out = np.empty(len(x))
        for start in range(0, len(x), self.batch_rows):
            piece = scaled[start : start + self.batch_rows]
            padded = np.zeros((self.batch_rows, piece.shape[1]), dtype=np.float32)
            padded[: len(piece)] = piece
            y = self.forward.forward(padded)[: len(piece)]
            out[start : start + len(piece)] = self.meta.to_dollars(y).reshape(-1)
        return out

    def collect(self, ticket: np.ndarray, rows: int) -> tuple[np.ndarray, RowErrors]:
        return ticket, {}

    def release(self, ticket: np.ndarray) -> None:
        return None
