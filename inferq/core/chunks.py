"""The bulk chunk message, shared by the producer and the worker.

A chunk of numeric rows travels as one message: little-endian float32 bytes,
column by column, compressed, then base64 (messages are JSON) instead of
thousands of JSON numbers; its dollar results come back as little-endian
float64 bytes. Product columns (flags, a few prices) compress about 10x, and
every later copy of the message (JSON, Redis, the unacked copy) shrinks with it.
Producers send zstd (level 1, Arrow's codec): a 16,384-row chunk compresses in
~1.1 ms and decompresses in ~0.5, where zlib level 1 took ~2.6 and ~0.8 for a
slightly larger message; zlib and uncompressed chunks (older producers) are
still read. Chunk ids are derived from the input's content, so a resumed run
asks for the same chunks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from inferq.errors import InvalidInput

if TYPE_CHECKING:
    import pyarrow as pa

FEATURE_DTYPE = np.dtype("<f4")
RESULT_DTYPE = np.dtype("<f8")
COMPRESSIONS = ("zstd", "zlib", None)
ZSTD_LEVEL = 1  # the fastest of zstd's standard levels; negative ones compressed no faster


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


@cache
def _zstd() -> pa.Codec:
    # Imported here: a stream-only worker never loads Arrow (~30 MB), a bulk one once.
    import pyarrow as pa

    return pa.Codec("zstd", compression_level=ZSTD_LEVEL)


def encode_matrix(x: np.ndarray, compression: str | None = "zlib") -> str:
    """(rows x columns) values -> base64 of column-major float32 LE, compressed with
    ``compression`` (zstd level 1, zlib level 1, or None)."""
    raw: Any = np.ascontiguousarray(np.asarray(x).T, dtype=FEATURE_DTYPE)
    if compression == "zstd":
        raw = _zstd().compress(raw, asbytes=False)
    elif compression == "zlib":
        raw = zlib.compress(raw, 1)
    elif compression is not None:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, not {compression!r}")
    return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class EncodedChunk:
    """A chunk's rows as its message carries them: made apart from the send, so a bulk
    run encodes on its reader thread, not the sending one."""

    rows: int
    data: str
    compression: str | None

    @classmethod
    def of(cls, x: np.ndarray, compression: str | None = "zstd") -> EncodedChunk:
        """``x`` (rows x features) encoded: zstd by default, the cheapest to make and to
        read; zlib for workers older than zstd chunks; None for none."""
        return cls(len(x), encode_matrix(x, compression), compression)


def decode_matrix(data: Any, rows: Any, columns: int, compression: Any = "zlib") -> np.ndarray:
    """The (rows x columns) float32 matrix of a chunk message, its size checked."""
    return decode_columns(data, rows, columns, compression).T


def decode_columns(data: Any, rows: Any, columns: int, compression: Any = "zlib") -> np.ndarray:
    """The chunk as it travels: (columns x rows) float32, C-contiguous and read-only,
    its size checked (a worker works on whole columns: no transposed copy)."""
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
    elif compression == "zstd":
        raw = _unzstd(raw, expected)
    if len(raw) != expected:
        message = f"{len(raw)} bytes for {rows} rows x {columns} float32; expected {expected}"
        raise InvalidInput.single("data", "bad_chunk", message)
    return np.frombuffer(raw, dtype=FEATURE_DTYPE).reshape(columns, rows)


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


def _unzstd(raw: bytes, expected: int) -> Any:
    """Decompress into exactly ``expected`` bytes: Arrow's codec refuses a frame that
    holds more (a bomb stops there) or fewer (zstd frames name their content size)."""
    try:
        return _zstd().decompress(raw, decompressed_size=expected, asbytes=False)
    except (OSError, ValueError) as exc:  # pyarrow's IOError, for any bad frame
        message = f"data is not {expected} bytes of zstd: {exc}"
        raise InvalidInput.single("data", "bad_chunk", message) from None


def encode_results(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=RESULT_DTYPE).tobytes()).decode()


def decode_results(data: str, rows: int) -> np.ndarray:
    values = np.frombuffer(base64.b64decode(data), dtype=RESULT_DTYPE)
    if len(values) != rows:
        raise ValueError(f"{len(values)} results for {rows} rows")
    return values
