"""A small client over Celery for services that send jobs to inferq workers.

It builds its own Celery app from the same Settings as the workers and never
imports the worker package (so never TensorFlow).
"""

from __future__ import annotations

import base64
import functools
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import ResultSet

from inferq.core.celery_config import celery_config
from inferq.core.chunks import EncodedChunk, task_id_of
from inferq.core.constants import (
    CLASSIFIER_INFO_TASK,
    CLASSIFY_CHUNK_TASK,
    CLASSIFY_TASK,
    IMAGE_BLOB_PREFIX,
    MODEL_INFO_TASK,
    PREDICT_TASK,
    SCORE_CHUNK_TASK,
)
from inferq.core.contract import (
    ClassifierInfo,
    ClassifyChunkResult,
    ClassifyResult,
    PredictResult,
    RegressorInfo,
    ScoreChunkResult,
)
from inferq.core.processes import Managed
from inferq.core.settings import Settings
from inferq.errors import InferqError, JobTimeout
from producer.broker_watch import BrokerWatch
from producer.handles import Handle, R, Schedule
from producer.presence import held_ids
from producer.sending import sending

Rows = dict[str, Any] | list[dict[str, Any]]
INFO_RESEND_AFTER_S = 10.0


@dataclass(frozen=True)
class Blob:
    """An image file stored in Redis by ``Client.store_images``."""

    id: str


def _image_item(image: bytes | str | Blob) -> dict[str, str]:
    if isinstance(image, Blob):
        return {"blob": image.id}
    if isinstance(image, str):
        return {"path": image}
    return {"image_b64": base64.b64encode(image).decode("ascii")}


class Client(Managed):
    def __init__(self, settings: Settings | None = None, *, queue: str | None = None) -> None:
        self.settings = settings or Settings.load()
        self.queue = queue or self.settings.regression_queue
        self.app = Celery("inferq-producer", set_as_current=False)
        self.app.conf.update(celery_config(self.settings))
        # The result store's client follows a Sentinel failover to the new master.
        self.broker = BrokerWatch(lambda: self.app.backend.client)

    def _send(
        self,
        task: str,
        kwargs: dict[str, Any],
        queue: str,
        size: int,
        parse: type[R],
        expires_s: float | None,
        task_id: str | None = None,
    ) -> Handle[R]:
        sent_at = time.monotonic()
        generation = self.broker.look()  # before the send: a change after it is noticed
        send = functools.partial(
            self.app.send_task,
            task,
            kwargs=kwargs,
            queue=queue,
            expires=expires_s,
            # Celery would otherwise repr() the payload into every message header: slow,
            # and it copies payload data into logs and events.
            argsrepr="()",
            kwargsrepr=f"{{size: {size}}}",
        )
        result = sending(send, task_id=task_id)
        return Handle(
            result.id,
            size,
            sent_at,
            result,
            parse,
            functools.partial(sending, send, task_id=result.id),
            queue,
            functools.partial(self._holds, queue, result.id),
            _broker=self.broker,
            _generation=generation,
        )

    def _holds(self, queue: str, task_id: str) -> bool:
        return task_id in held_ids(self.app.backend.client, [queue])

    def submit(self, rows: Rows, *, expires_s: float | None = None) -> Handle[PredictResult]:
        """Send one prediction job of one row (a dict) or many rows (a list of dicts)."""
        size = len(rows) if isinstance(rows, list) else 1
        return self._send(PREDICT_TASK, {"rows": rows}, self.queue, size, PredictResult, expires_s)

    def submit_image(
        self,
        image: bytes | Path | None = None,
        *,
        path: str | None = None,
        top_k: int = 5,
        expires_s: float | None = None,
    ) -> Handle[ClassifyResult]:
        """Send one classification job: image bytes (or a local file to read), or a path
        under the worker's INFERQ_IMAGE_ROOT."""
        kwargs: dict[str, Any] = {"top_k": top_k}
        if image is not None:
            data = image.read_bytes() if isinstance(image, Path) else image
            kwargs["image_b64"] = base64.b64encode(data).decode("ascii")
        if path is not None:
            kwargs["path"] = path
        queue = self.settings.vision_queue
        return self._send(CLASSIFY_TASK, kwargs, queue, 1, ClassifyResult, expires_s)

    def store_images(self, images: list[bytes], ttl_s: float) -> list[Blob]:
        """Store image files in Redis as they are, for ``submit_images``: a large photo
        then costs one SET and one GET instead of base64 and JSON through every copy of a
        message. They expire after ``ttl_s``; ``drop_images`` removes them sooner."""
        blobs = [Blob(uuid.uuid4().hex) for _ in images]
        with self.app.backend.client.pipeline(transaction=False) as pipe:
            for blob, data in zip(blobs, images, strict=True):
                pipe.set(IMAGE_BLOB_PREFIX + blob.id, data, px=max(1, int(ttl_s * 1000)))
            sending(pipe.execute)
        return blobs

    def drop_images(self, blobs: list[Blob]) -> None:
        """Remove stored images whose chunk is answered (or given up)."""
        if blobs:
            keys = [IMAGE_BLOB_PREFIX + b.id for b in blobs]
            sending(functools.partial(self.app.backend.client.delete, *keys))

    def submit_images(
        self,
        images: Sequence[bytes | str | Blob],
        *,
        top_k: int = 5,
        expires_s: float | None = None,
        model_version: str | None = None,
    ) -> Handle[ClassifyChunkResult]:
        """Send many images as one classify_images job (bulk: one message, one result,
        each image answered in the result with its labels or its own error): file bytes
        (sent base64 in the message), a path (str) under the worker's INFERQ_IMAGE_ROOT,
        or a Blob from ``store_images``. With ``model_version``, a worker serving another
        classifier version refuses the chunk (ModelVersionMismatch)."""
        items = [_image_item(image) for image in images]
        kwargs: dict[str, Any] = {"images": items, "top_k": top_k}
        if model_version is not None:
            kwargs["model_version"] = model_version
        queue = self.settings.vision_queue
        size = len(images)
        return self._send(CLASSIFY_CHUNK_TASK, kwargs, queue, size, ClassifyChunkResult, expires_s)

    def submit_chunk(
        self,
        chunk_id: str,
        features: list[str],
        x: np.ndarray | EncodedChunk,
        model_version: str | None = None,
    ) -> Handle[ScoreChunkResult]:
        """Send one bulk chunk (rows x features raw values, or those values already
        encoded by ``EncodedChunk.of``) as one compact message.

        Its task id is derived from ``chunk_id``: a chunk sent twice (a resumed run)
        has one result key, so results are stored idempotently. With ``model_version``,
        a worker serving another version refuses it (ModelVersionMismatch)."""
        chunk = x if isinstance(x, EncodedChunk) else EncodedChunk.of(x)
        kwargs: dict[str, Any] = {"chunk_id": chunk_id, "features": features, "rows": chunk.rows}
        kwargs.update(data=chunk.data, compression=chunk.compression)
        if model_version is not None:
            kwargs["model_version"] = model_version
        return self._send(
            SCORE_CHUNK_TASK,
            kwargs,
            self.queue,
            chunk.rows,
            ScoreChunkResult,
            None,
            task_id_of(chunk_id),
        )

    def stored_chunk(self, chunk_id: str) -> Handle[ScoreChunkResult] | None:
        """The handle of a chunk already scored (by an interrupted run), if its result is kept."""
        result = self.app.AsyncResult(task_id_of(chunk_id))
        if result.state != "SUCCESS":
            return None
        return Handle(result.id, 0, time.monotonic(), result, ScoreChunkResult)

    def regressor_info(self, timeout_s: float = 30.0) -> RegressorInfo:
        """What the serving regressor expects (features, version), asked of a worker.

        Sent again if Redis loses it (a worker killed as it took the job): a bulk run
        waits for this answer before anything else."""
        handle = self._send(MODEL_INFO_TASK, {}, self.queue, 0, RegressorInfo, None)
        try:
            return handle.wait(timeout_s, resend_after_s=INFO_RESEND_AFTER_S)
        except JobTimeout:
            raise JobTimeout(f"no regression worker answered within {timeout_s} s") from None

    def classifier_info(self, timeout_s: float = 30.0) -> ClassifierInfo:
        """The serving classifier (name, version), asked of a vision worker."""
        queue = self.settings.vision_queue
        handle = self._send(CLASSIFIER_INFO_TASK, {}, queue, 0, ClassifierInfo, None)
        try:
            return handle.wait(timeout_s, resend_after_s=INFO_RESEND_AFTER_S)
        except JobTimeout:
            raise JobTimeout(f"no vision worker answered within {timeout_s} s") from None

    def predict(self, rows: Rows, timeout_s: float = 30.0) -> PredictResult:
        return self.submit(rows).wait(timeout_s)

    def classify(
        self, image: bytes | Path, top_k: int = 5, timeout_s: float = 60.0
    ) -> ClassifyResult:
        return self.submit_image(image, top_k=top_k).wait(timeout_s)

    def as_completed(
        self,
        handles: Iterable[Handle[R]],
        timeout_s: float = 60.0,
        *,
        resend_after_s: float | None = None,
    ) -> Iterator[tuple[Handle[R], R | InferqError]]:
        """Each handle with its result or error, in the order they finish.

        With ``resend_after_s``, jobs still unanswered after that long are sent again
        (same ids, so still one result each), then again after as long, until
        ``timeout_s``: the cover for a job the broker lost with a killed worker. Only
        jobs Redis no longer holds (neither queued nor unacked by a live worker) and
        that have no stored result are sent again, so a long queue is never copied."""
        pending = {h.id: h for h in handles}
        schedule = Schedule.start(timeout_s, resend_after_s)
        suspects: set[str] = set()  # missing from Redis at the last resend round
        # The oldest generation sent in: a newer one means Redis restarted or failed over
        # since, so the pending jobs are checked at once (producer.broker_watch).
        generation = min((h._generation for h in pending.values()), default=0)
        while pending:
            # Results already stored first, with one MGET: Celery's iter_native (5.7) never
            # yields a result whose message an earlier wait() read, and with one such in
            # the set it runs to its timeout after yielding the rest.
            stored = self.app.backend.get_many(list(pending), interval=0, max_iterations=1)
            for task_id, meta in stored:
                yield self._answer(pending.pop(task_id), meta)
            if not pending:
                return
            if resend_after_s is not None and (now := self.broker.look()) != generation:
                generation = now
                schedule.recheck_now()
            if schedule.resend_due():
                suspects = self._resend_lost(pending, suspects)
            wait_s = schedule.next_wait_s()
            if wait_s is None:
                raise JobTimeout(f"{len(pending)} job(s) not finished within {timeout_s} s")
            results = ResultSet([h._result for h in pending.values()], app=self.app)
            try:
                for task_id, meta in results.iter_native(timeout=wait_s):
                    yield self._answer(pending.pop(task_id), meta)
                    if not pending:
                        return
            except CeleryTimeout:
                pass  # a slice ended: read the store again, resend if due

    def _resend_lost(self, pending: dict[str, Handle[R]], suspects: set[str]) -> set[str]:
        """Resend the pending jobs Redis held at neither this round nor the last, and that
        have no result; the ids missing this round (the next round's suspects).

        Two rounds, because a job is missing for a moment on its normal way: popped
        from the queue, not yet recorded as unacked. A lost one stays missing."""
        queues = {h.queue for h in pending.values() if h.queue is not None}
        held = held_ids(self.app.backend.client, queues)
        missing = {task_id for task_id in pending if task_id not in held}
        if missing:
            answered = self.app.backend.get_many(list(missing), interval=0, max_iterations=1)
            missing -= {task_id for task_id, _ in answered}
        for task_id in missing & suspects:
            pending[task_id].resend()
        return missing

    @staticmethod
    def _answer(handle: Handle[R], meta: dict[str, Any]) -> tuple[Handle[R], R | InferqError]:
        try:
            return handle, handle.outcome(meta["status"], meta["result"])
        except InferqError as exc:
            return handle, exc

    def close(self) -> None:
        self.app.close()
