"""Image bytes to model input under a memory budget, and the decode stage of the direct path.

Decoding is where a worker's memory can run away: a flat 6000x6000 RGBA PNG is
~100 kB on the wire and ~290 MB while it is decoded. Every decode, on any path,
first reserves what the image will take (``inferq.core.images.decode_bytes_needed``,
known from the header before a pixel is decoded) from the process's one
``DecodeBudget``, and waits while the images already decoding hold too much. So
what decoding holds at once is at most the budget, or one image alone if a single
image needs more than the whole budget (docs/configuration.md has the formula).

``DecodeStage`` is the direct path's pool of decoding threads (worker.celeryapp.
direct_images): the consumer thread hands it an image job and returns to fetching.
It also bounds the preprocessed images that wait for a forward pass (``max_waiting``):
a decode starts only when fewer than that many are queued for the model, so fast
decoding cannot pile up tensors in front of a slower model.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from inferq.core.images import ImageError, decode_bytes_needed, finish_decode, open_image
from inferq.core.settings import Settings
from inferq.errors import InvalidInput
from worker.engine.runner import BatchOutput
from worker.loading.classifier import Preprocess
from worker.loading.registry import ServedClassifier

# A decode task of the stage: the future of its image's forward pass, or None.
Decode = Callable[[], "Future[BatchOutput] | None"]


class DecodeBudget:
    """Bytes the images being decoded may hold at once, shared by every decoding thread."""

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes < 1:
            raise ValueError("a decode budget must be at least one byte")
        self.limit_bytes = limit_bytes
        self.used_bytes = 0
        self.peak_bytes = 0  # the most reserved at once (for tests and metrics)
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        """Reserve ``nbytes`` (an image larger than the budget waits for all of it)."""
        nbytes = min(nbytes, self.limit_bytes)
        with self._cond:
            self._cond.wait_for(lambda: self.used_bytes + nbytes <= self.limit_bytes)
            self.used_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.used_bytes)
        try:
            yield
        finally:
            with self._cond:
                self.used_bytes -= nbytes
                self._cond.notify_all()


def model_input(
    served: ServedClassifier, data: bytes, field: str, budget: DecodeBudget
) -> np.ndarray:
    """One image's bytes as the model's input (float32), decoded within the budget;
    InvalidInput naming ``field`` if the bytes are no usable image."""
    try:
        return decode_input(data, served.settings, served.min_short_side, served.preprocess, budget)
    except ImageError as exc:
        raise InvalidInput.single(field, exc.code, exc.message) from None


def decode_input(
    data: bytes,
    settings: Settings,
    min_short_side: int | None,
    preprocess: Preprocess,
    budget: DecodeBudget,
) -> np.ndarray:
    """Bytes to model input: the header read, memory reserved, decoded (JPEGs at the
    reduced size), preprocessed; ImageError if the bytes are no usable image."""
    img = open_image(
        data,
        max_bytes=settings.max_image_bytes,
        max_pixels=settings.max_image_pixels,
        min_short_side=min_short_side,
    )
    with budget.hold(decode_bytes_needed(img)):
        rgb = finish_decode(img)
        try:
            return np.asarray(preprocess(rgb), dtype=np.float32)
        finally:
            rgb.close()


class DecodeStage:
    """A few decoding threads in front of the batch queue (one per core by default)."""

    def __init__(self, threads: int, max_waiting: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="inferq-decode")
        self._waiting = threading.BoundedSemaphore(max_waiting)

    def submit(self, decode: Decode) -> None:
        """Run ``decode`` on a decoding thread once fewer than ``max_waiting`` images wait
        for the model. It decodes and queues one image and returns the future of its
        forward pass, or None when it answered the job otherwise (a bad image); it must
        not raise: nobody would hear of it."""
        self._pool.submit(self._run, decode)

    def _run(self, decode: Decode) -> None:
        self._waiting.acquire()
        future = None
        try:
            future = decode()
        finally:
            if future is None:
                self._waiting.release()
            else:
                future.add_done_callback(lambda _: self._waiting.release())

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
