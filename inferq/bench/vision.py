"""`inferq bench vision`: images through one vision worker vs the raw model.

(a) end to end: N classify jobs (JPEG bytes, base64) enqueued from one client,
labels read back from the result backend; decoding included. (b) raw: the same
model file, in this process, through the same compiled function at the same
batch size, on the same images already decoded and preprocessed. The worker is
stopped before (b) so the two do not share the CPU.
"""

from __future__ import annotations

import base64
import math
import time
import uuid
from typing import Any

import numpy as np

from inferq.bench.phases import bench_app, log, run_phase
from inferq.core.constants import CLASSIFY_TASK
from inferq.core.settings import Settings
from inferq.data import SAMPLE_IMAGES, sample_image
from inferq.ops.redis_server import redis_url_or_own
from inferq.ops.worker_process import WorkerProcess

WARMUP_IMAGES = 32


def _jobs(n: int) -> list[dict[str, Any]]:
    images = [base64.b64encode(sample_image(name).read_bytes()).decode() for name in SAMPLE_IMAGES]
    return [{"image_b64": images[i % len(images)], "top_k": 5} for i in range(n)]


def raw_images_per_s(settings: Settings, n: int) -> float:
    """The model alone: preprocessed batches through its compiled function."""
    from worker.engine.forward import KerasForward
    from worker.engine.runner import bucket_sizes_for
    from worker.jobs.image_source import load_image
    from worker.loading.classifier import load_classifier

    loaded = load_classifier(settings)
    size = settings.vision_max_batch_size
    forward = KerasForward(loaded.keras_model, loaded.name, loaded.version, bucket_sizes_for(size))
    inputs = [loaded.preprocess(load_image(j["image_b64"], None, settings)) for j in _jobs(size)]
    batch = np.stack(inputs).astype(np.float32)
    forward.forward(batch)  # warm
    passes = math.ceil(n / size)
    started = time.perf_counter()
    for _ in range(passes):
        forward.forward(batch)
    return passes * size / (time.perf_counter() - started)


def run_vision_bench(settings: Settings, *, images: int) -> dict[str, Any]:
    queue = f"bench-{uuid.uuid4().hex[:8]}-vision"
    env = {"INFERQ_VISION_QUEUE": queue, "INFERQ_MODELS_DIR": str(settings.models_dir.resolve())}
    jobs = _jobs(images)
    with redis_url_or_own(settings.redis_url) as url:
        app = bench_app(settings, url)
        with WorkerProcess(url, ("vision",), env=env, args=["--loglevel", "WARNING"]) as worker:
            log(f"vision worker ready (pid {worker.pid}); warming up")
            run_phase(app, CLASSIFY_TASK, queue, jobs[:WARMUP_IMAGES])
            log(f"(a) {images} classify_image jobs end to end")
            e2e = run_phase(app, CLASSIFY_TASK, queue, jobs, worker.pid)
        app.close()
    log(f"(b) the raw model in process on {images} images")
    raw = raw_images_per_s(settings, images)
    return {
        "images": images,
        "e2e_images_per_s": e2e["jobs_per_s"],
        "raw_images_per_s": round(raw, 1),
        "ratio_to_raw": round(e2e["jobs_per_s"] / raw, 3),
        "batch_size": settings.vision_max_batch_size,
        "mean_batch_images": e2e["mean_batch_rows"],
        "worker_cpu_ms_per_image": e2e["worker_cpu_ms_per_job"],
        "p50_ms": e2e["p50_ms"],
        "p99_ms": e2e["p99_ms"],
        "failed": e2e["failed"],
        "model": settings.classifier,
    }
