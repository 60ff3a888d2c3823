"""`inferq classify`: image files to the vision workers, labels to stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from inferq.contract import ClassifyResult
from inferq.errors import InferqError
from producer.client import Client, Handle


def classify_files(
    client: Client, paths: list[Path], out: TextIO, *, top_k: int, as_json: bool, timeout_s: float
) -> int:
    """Print each image's labels (or error) in the order given; the number that failed."""
    handles: list[tuple[Path, Handle[ClassifyResult] | InferqError]] = []
    for path in paths:
        try:
            handles.append((path, client.submit_image(path.read_bytes(), top_k=top_k)))
        except OSError as exc:
            error = {"code": "unreadable_file", "message": f"{path}: {exc.strerror}"}
            handles.append((path, InferqError(error)))
    failed = 0
    for path, handle in handles:
        record: dict[str, Any] = {"source": str(path)}
        try:
            if isinstance(handle, InferqError):
                raise handle
            result = handle.wait(timeout_s)
            record["labels"] = [label.model_dump(exclude={"index"}) for label in result.labels]
        except InferqError as exc:
            failed += 1
            record["error"] = exc.info
        out.write(json.dumps(record) + "\n" if as_json else _text(record))
    return failed


def _text(record: dict[str, Any]) -> str:
    if "error" in record:
        error = record["error"]
        return f"{record['source']}: error {error.get('code')}: {error.get('message')}\n"
    labels = ", ".join(f"{x['label']} {x['score']:.3f}" for x in record["labels"])
    return f"{record['source']}: {labels}\n"
