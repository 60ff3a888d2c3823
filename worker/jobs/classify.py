"""``inferq.classify_image``: an image (base64 bytes or a file under the image root) in,
top-k labels out.

The image is decoded and preprocessed in the job's own thread, so the next images
are decoded while the runner thread keeps the model busy.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from worker.jobs.checks import batch_info, to_ms, top_k
from worker.jobs.image_source import load_image
from worker.loading.registry import ServedClassifier


def run(served: ServedClassifier, image_b64: Any, path: Any, k: Any) -> dict[str, Any]:
    started = time.monotonic()
    k = top_k(k)
    x = served.preprocess(load_image(image_b64, path, served.settings))[None]
    decoded = time.monotonic()
    probs, parts = served.runner.infer(x.astype(np.float32), served.timeout_s)
    return {  # ClassifyResult
        "labels": [dict(p) for p in served.labels.top_k(probs[0], k)],
        "model": {"name": served.name, "version": served.version},
        "batch": batch_info(parts),
        "timings_ms": {
            "decode_ms": to_ms(decoded - started),
            "batch_wait_ms": round(parts[0].wait_ms, 3),
            "inference_ms": round(parts[0].inference_ms, 3),
            "total_ms": to_ms(time.monotonic() - started),
        },
    }
