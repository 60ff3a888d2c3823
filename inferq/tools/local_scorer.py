"""The bulk scorer that runs the model in this process: `inferq score --in-process`.

The benchmark's baseline (what a plain script would do), and a way to check the
queue path's output byte for byte: the same reader and writer as the queue path,
the same model file in one compiled (XLA) function.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inferq.core.modelfile import file_version, read_meta
from producer.bulk.scorers import RowErrors
from worker.engine.forward import KerasForward
from worker.loading.keras_files import load_keras


class LocalScorer:
    """The model in this process: one compiled (XLA) function on ``batch_rows`` rows."""

    def __init__(self, model_path: Path, batch_rows: int = 8192) -> None:
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

    def refresh(self) -> None:
        return None  # this process's model file does not change under it
