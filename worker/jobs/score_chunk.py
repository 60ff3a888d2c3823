"""``inferq.score_chunk``: one bulk chunk of rows per message (inferq.core.chunks).

The chunk's rows go through the same batch runner as stream jobs, in the bulk lane:
passes of ``bulk_batch_size`` rows, sized for throughput, that stream jobs go ahead of
(worker.engine.batching), so a worker serves both at once. Rows are checked here again with
the row rules (inferq.core.rows): a bad row gets its own error in the result and
the other rows of the chunk are scored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from inferq.core.chunks import decode_columns, encode_results
from inferq.core.modelfile import RegressorMeta
from inferq.core.rows import (
    CODE_NAMES,
    MESSAGES,
    OK,
    all_values_pass,
    field_error,
    first_problems,
    value_codes,
)
from inferq.errors import InvalidInput, ModelVersionMismatch
from worker.jobs.checks import to_ms
from worker.loading.registry import ServedRegressor


def run(
    served: ServedRegressor,
    chunk_id: Any,
    features: Any,
    rows: Any,
    data: Any,
    compression: Any,
    model_version: Any = None,
) -> dict[str, Any]:
    started = time.monotonic()
    if model_version is not None and model_version != served.version:
        # One model per output: a chunk made for another version is refused, not scored.
        raise ModelVersionMismatch.between(str(model_version)[:64], served.version)
    meta = served.meta
    order = _column_order(features, meta.features)
    if isinstance(rows, int) and rows > served.max_chunk_rows:
        message = f"{rows} rows; the chunk limit is {served.max_chunk_rows}"
        raise InvalidInput.single(None, "too_many_rows", message)
    columns = decode_columns(data, rows, len(order), compression)
    if order != sorted(order):
        columns = columns[order]  # whole columns: cheap
    codes = _problems(columns)
    ok = None if codes is None else (codes == OK).all(axis=1)
    dollars = np.full(columns.shape[1], np.nan)
    passes = 0
    if ok is None or ok.any():
        scaled = _scaled_rows(columns if ok is None else columns[:, ok], meta)
        outputs, parts = served.runner.infer(scaled, served.timeout_s, bulk=True)
        dollars[slice(None) if ok is None else ok] = meta.to_dollars(outputs).reshape(-1)
        passes = len(parts)
    return {  # ScoreChunkResult
        "chunk_id": chunk_id,
        "rows": len(dollars),
        "earnings_usd_f64": encode_results(dollars),
        "row_errors": [] if codes is None else _row_errors(codes, meta.features),
        "model": {"name": served.name, "version": served.version},
        "passes": passes,
        "timings_ms": {"total_ms": to_ms(time.monotonic() - started)},
    }


def _problems(columns: np.ndarray) -> np.ndarray | None:
    """The row rules' codes (rows x features), or None when every value passes: the
    usual chunk, checked with two reductions instead of a code per value."""
    if all_values_pass(columns):
        return None
    return value_codes(columns.T.astype(np.float64))


def _scaled_rows(columns: np.ndarray, meta: RegressorMeta) -> np.ndarray:
    """The model's input (rows x features, float32, C order) from the chunk's columns:
    the scaler's float64 arithmetic on a column-major copy (its inner loops run down the
    columns, not across 9 values a row), then one rounding to float32. The same numbers
    as on a row-major float64 copy of the rows (test_bulk_passes)."""
    return np.ascontiguousarray(meta.scale_features(columns.T), dtype=np.float32)


def _column_order(given: Any, expected: Sequence[str]) -> list[int]:
    """Indices into the message's columns that give the model's feature order."""
    if not isinstance(given, list) or not all(isinstance(g, str) for g in given):
        raise InvalidInput.single(None, "bad_chunk", "features must be a list of column names")
    missing = [f for f in expected if f not in given]
    unknown = [g for g in given if g not in expected]
    if missing or unknown or len(set(given)) != len(given):
        message = f"chunk columns {given} are not the model's features {list(expected)}"
        raise InvalidInput.single(None, "feature_mismatch", message)
    return [given.index(f) for f in expected]


def _row_errors(codes: np.ndarray, features: Sequence[str]) -> list[dict[str, Any]]:
    """The first problem of each refused row."""
    return [
        field_error(row, features[col], CODE_NAMES[code], MESSAGES[code])
        for row, col, code in first_problems(codes)
    ]
