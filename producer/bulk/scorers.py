"""Who computes a bulk chunk: the Scorer protocol, and the workers through Redis.

A scorer gives, for a chunk's valid rows, one dollar value per row and the errors
of rows the model side refused. The other scorer, the model in this process
(`inferq score --in-process`, the benchmark's baseline), is
inferq.tools.local_scorer: it imports TensorFlow, which nothing here may.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

import numpy as np

from inferq.core.chunks import EncodedChunk, decode_results
from inferq.core.contract import ScoreChunkResult
from inferq.errors import BrokerUnavailable, ModelVersionMismatch
from producer.client import Client
from producer.handles import Handle

log = logging.getLogger("inferq.bulk")

# How long the sending thread rides through a broker that does not answer (a Sentinel
# failover, a Redis restart) before the chunk's send fails: seconds, not a chunk timeout.
SEND_RETRY_S = 30.0
SEND_RETRY_MAX_WAIT_S = 2.0

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
        """The chunk's output is safely on disk: drop what is kept for it. Called on the
        run's writer thread, once the chunk's part is written."""
        ...

    def refresh(self) -> None:
        """Learn the serving model again (features, version): a run that starts over."""
        ...


@runtime_checkable
class Preparing(Protocol):
    """A scorer that turns a chunk's rows into what it sends ahead of ``submit`` (on the
    run's reader thread), and takes that in ``submit`` instead of the rows."""

    def prepare(self, x: np.ndarray) -> Any: ...


class QueueScorer:
    """The workers, through Redis. Chunks are sent in order on a thread of their own: a
    send waits for Redis two or three times (the message, its result subscription, the
    task-sent event), and on a busy machine each wait is a wake-up of Redis and one of
    the sender. The run's thread then only collects, while the next chunks go out."""

    def __init__(
        self,
        client: Client,
        chunk_timeout_s: float,
        *,
        reuse_stored: bool,
        resend_after_s: float = 120.0,
    ) -> None:
        self.client = client
        self.chunk_timeout_s = chunk_timeout_s
        self.reuse_stored = reuse_stored
        self.resend_after_s = resend_after_s
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="inferq-sender")
        self.refresh()

    def refresh(self) -> None:
        # As long as a chunk may wait: with no worker yet (scaling from zero), it comes.
        info = self.client.regressor_info(self.chunk_timeout_s)
        self.features = list(info.features)
        self.version = info.model.version

    def prepare(self, x: np.ndarray) -> EncodedChunk:
        """The chunk's message data, encoded on the run's reader thread: compressing is
        ~1 ms a 16,384-row chunk that the sending thread no longer spends."""
        return EncodedChunk.of(x)

    def submit(
        self, chunk_id: str, x: np.ndarray | EncodedChunk
    ) -> Future[Handle[ScoreChunkResult]]:
        # The model the run is on now, not when the send runs.
        return self._sender.submit(self._send, chunk_id, x, self.features, self.version)

    def _send(
        self, chunk_id: str, x: np.ndarray | EncodedChunk, features: list[str], version: str
    ) -> Handle[ScoreChunkResult]:
        # A resumed run first looks for a result the interrupted run's workers stored:
        # the chunk id includes the model version, so a stored result is the same answer
        # (collect checks it all the same).
        # A send Redis did not answer is tried again under the same id (one result per
        # id, so a send that did arrive is harmless): the sending thread sends the chunks
        # queued behind it at once, so a failover's few seconds without a master would
        # otherwise fail every one of them (tests/faults/test_sentinel.py saw 21).
        deadline, wait_s = time.monotonic() + SEND_RETRY_S, 0.1
        while True:
            try:
                stored = self.client.stored_chunk(chunk_id) if self.reuse_stored else None
                return stored or self.client.submit_chunk(chunk_id, features, x, version)
            except BrokerUnavailable as exc:
                if time.monotonic() + wait_s > deadline:
                    raise
                log.debug("chunk %s: send failed (%s); again in %.1f s", chunk_id, exc, wait_s)
                time.sleep(wait_s)  # a backoff between sends, not a wait for a condition
                wait_s = min(2 * wait_s, SEND_RETRY_MAX_WAIT_S)

    def collect(self, ticket: Any, rows: int) -> tuple[np.ndarray, RowErrors]:
        """``ticket``: what ``submit`` returned (the future of the chunk's handle)."""
        # A send that failed (BrokerUnavailable) is raised here, for this chunk.
        # Unanswered after resend_after_s, the chunk is sent again under its id: the
        # broker can lose a message with a killed worker (README, "Delivery guarantees").
        handle: Handle[ScoreChunkResult] = ticket.result()
        result = handle.wait(self.chunk_timeout_s, resend_after_s=self.resend_after_s)
        if result.model.version != self.version:  # one model per output, whoever answered
            raise ModelVersionMismatch.between(self.version, result.model.version)
        values = decode_results(result.earnings_usd_f64, rows)
        errors = {
            e.row: f"{e.code}: {e.field}: {e.message}"
            for e in result.row_errors
            if e.row is not None
        }
        return values, errors

    def release(self, ticket: Any) -> None:
        handle: Handle[ScoreChunkResult] = ticket.result()
        handle.forget()
