"""The bulk chunk message, shared by the producer and the worker.

A chunk of numeric rows travels as one message: little-endian float32 bytes,
column by column, zlib-compressed, then base64 (messages are JSON) instead of
thousands of JSON numbers; its dollar results come back as little-endian
float64 bytes. Product columns (flags, a few prices) compress about 9x, and
every later copy of the message (JSON, the broker's own base64, Redis, the
unacked copy) shrinks with it. Chunk ids are derived from the input's content,
so a resumed run asks for the same chunks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from typing import Any

import numpy as np

from inferq.errors import InvalidInput

FEATURE_DTYPE = np.dtype("<f4")
RESULT_DTYPE = np.dtype("<f8")
COMPRESSIONS = ("zlib", None)


def chunk_id(
    input_sha256: str, chunk_rows: int, index: int, model_version: str, output: str = ""
) -> str:
    """Deterministic: the same input, chunking, model and output give the same id (and
    task id), so a resumed run finds the results its first run's workers stored. The
    output is part of it: two runs of one input into two outputs, side by side, must
    not share (and delete) each other's results."""
    key = f"{input_sha256}:{chunk_rows}:{index}:{model_version}:{output}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def task_id_of(chunk: str) -> str:
    return f"inferq-chunk-{chunk}"


def encode_matrix(x: np.ndarray, compression: str | None = "zlib") -> str:
    """(rows x columns) values -> base64 of column-major float32 LE (zlib level 1)."""
    raw = np.ascontiguousarray(np.asarray(x).T, dtype=FEATURE_DTYPE).tobytes()
    if compression == "zlib":
        raw = zlib.compress(raw, 1)
    return base64.b64encode(raw).decode()


def decode_matrix(data: Any, rows: Any, columns: int, compression: Any = "zlib") -> np.ndarray:
    """The (rows x columns) float32 matrix of a chunk message, its size checked."""
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise InvalidInput.single(
            "data", "bad_chunk", f"rows must be a non-negative integer, not {rows!r}"
        )
    if not isinstance(data, str):
        raise InvalidInput.single("data", "bad_chunk", "data must be a base64 string")
    if compression not in COMPRESSIONS:
        raise InvalidInput.single(
            "data", "bad_chunk", f"compression must be one of {COMPRESSIONS}, not {compression!r}"
        )
    try:
        # strict a2b_base64, not b64decode(validate=True): that one runs a regex over the
        # whole payload first, slower than the decoding itself.
        raw = binascii.a2b_base64(data, strict_mode=True)
    except (ValueError, binascii.Error):
        raise InvalidInput.single("data", "invalid_base64", "data is not valid base64") from None
    expected = rows * columns * FEATURE_DTYPE.itemsize
    if compression == "zlib":
        raw = _inflate(raw, expected)
    if len(raw) != expected:
        message = f"{len(raw)} bytes for {rows} rows x {columns} float32; expected {expected}"
        raise InvalidInput.single("data", "bad_chunk", message)
    return np.frombuffer(raw, dtype=FEATURE_DTYPE).reshape(columns, rows).T


def _inflate(raw: bytes, expected: int) -> bytes:
    """Decompress at most one byte more than expected: a zlib bomb stops there."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(raw, expected + 1)
    except zlib.error as exc:
        raise InvalidInput.single("data", "bad_chunk", f"data is not valid zlib: {exc}") from None
    if not inflater.eof and len(out) <= expected:
        raise InvalidInput.single("data", "bad_chunk", "data is truncated zlib")
    return out


def encode_results(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=RESULT_DTYPE).tobytes()).decode()


def decode_results(data: str, rows: int) -> np.ndarray:
    values = np.frombuffer(base64.b64decode(data), dtype=RESULT_DTYPE)
    if len(values) != rows:
        raise ValueError(f"{len(values)} results for {rows} rows")
    return values
