"""Image bytes a producer stored in Redis for a chunk, read by the decoding threads.

A 3 MB photo in a message is base64'd, JSON-encoded, decoded, and copied whole into
kombu's unacked hash and back: more CPU than its reduced-size decode. Stored as a
raw Redis value instead (``{"blob": id}`` in the chunk, key ``inferq-image:<id>``),
it is one SET and one GET. The producer removes its blobs once the chunk is answered
(they also expire); a redelivered chunk finds them still there.
"""

from __future__ import annotations

from typing import Any

from inferq.core.constants import IMAGE_BLOB_PREFIX
from worker.jobs.image_source import BlobReader


def blob_reader(backend: Any) -> BlobReader | None:
    """A reader of blobs through the result backend's Redis client (None for a backend
    without one: chunks with blobs are then refused, each image with no_blob_store)."""
    client = getattr(backend, "client", None)
    if client is None or not hasattr(client, "pipeline"):
        return None

    def read(blob: str, max_bytes: int) -> bytes | None:
        key = IMAGE_BLOB_PREFIX + blob
        with client.pipeline(transaction=False) as pipe:
            pipe.exists(key)
            pipe.getrange(key, 0, max_bytes)  # one byte past the limit at most
            exists, data = pipe.execute()
        return bytes(data) if exists else None

    return read
