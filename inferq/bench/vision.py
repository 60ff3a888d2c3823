"""`inferq bench vision`: is sending images through a worker slower than the script a
user would write instead?

On two image sets side by side (inferq.bench.imagesets: ImageNet-size ~500x375
JPEGs and 12-megapixel phone photos, made from the shipped samples), in one run:

* (b) bulk: `score-images`' own code (producer.bulk.score_images) through one vision
  worker, chunks of images in one message each; then again with the files sent as
  paths under the worker's image root (`--worker-root`: a shared file system);
* (a) stream: one `classify_image` job per image (base64), all sent by one client;
* then, with the worker stopped so that nothing shares the cores:
* (s) the straightforward in-process script (inferq.bench.vision_local): full
  Pillow decode on a thread pool, the same crop, resize, scaling and model;
* (r) the raw model on preprocessed tensors, for reference;
* CPU milliseconds per image: decoding (the worker's reduced-size decode and the
  script's full one, one thread), the model, and what the worker, the client and
  Redis spend besides (message handling), from /proc and the process's own clock.
"""

from __future__ import annotations

import base64
import functools
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from inferq.bench.imagesets import default_cache, ensure_set
from inferq.bench.phases import bench_app, cpu_seconds, log, run_phase
from inferq.bench.settings_record import (
    compose_overrides,
    compose_status,
    label,
    worker_settings,
)
from inferq.core.constants import CLASSIFY_TASK
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess
from producer.bulk.score_images import ImageOptions, score_images
from producer.client import Client

WARMUP_IMAGES = 32
COMPOSE_SERVICE = "vision-worker"


class _Cpu:
    """CPU seconds of the worker, Redis and this process (the client) over a phase."""

    def __init__(self, worker_pid: int, redis_pid: int | None) -> None:
        self.pids = {"worker": worker_pid, "redis": redis_pid}

    def __enter__(self) -> _Cpu:
        self.before = self._now()
        return self

    def __exit__(self, *_: object) -> None:
        self.spent = {k: v - self.before[k] for k, v in self._now().items()}

    def _now(self) -> dict[str, float]:
        now = {k: cpu_seconds(pid) or 0.0 for k, pid in self.pids.items()}
        return {**now, "client": time.process_time()}

    def ms_per_image(self, images: int) -> dict[str, float]:
        return {k: round(v * 1000 / images, 2) for k, v in self.spent.items()}


def _bulk(
    client: Client, files: Sequence[Path], folder: Path, worker_root: Path | None = None
) -> dict[str, Any]:
    """(b): score-images' code on a folder of the files; rate from its own summary. With
    ``worker_root`` the files go as paths under the worker's image root, not as bytes."""
    source = Path(tempfile.mkdtemp(dir=folder))
    for path in files:
        (source / path.name).symlink_to(path)
    options = ImageOptions(worker_root=worker_root)
    summary = score_images(client, source, source / "labels.jsonl", options, every_s=1e9)
    return {"images_per_s": round(summary.ok / summary.seconds, 1), "failed": summary.failed}


def _stream(app: Any, queue: str, files: Sequence[Path]) -> dict[str, Any]:
    """(a): one classify_image job per image, all sent by one client."""
    jobs = [{"image_b64": base64.b64encode(p.read_bytes()).decode(), "top_k": 5} for p in files]
    phase = run_phase(app, CLASSIFY_TASK, queue, jobs)
    return {
        "images_per_s": phase["jobs_per_s"],
        "failed": phase["failed"],
        "p50_ms": phase["p50_ms"],
    }


def _measured(phase: Callable[[], dict[str, Any]], cpu: _Cpu, images: int) -> dict[str, Any]:
    with cpu:
        result = phase()
    return {**result, "cpu_ms_per_image": cpu.ms_per_image(images)}


def _through_worker(
    settings: Settings, sets: dict[str, list[Path]], tuning: dict[str, str]
) -> dict[str, Any]:
    """Every set through one worker with the defaults plus ``tuning`` (an override,
    recorded in the result's ``settings``)."""
    queue = f"bench-{uuid.uuid4().hex[:8]}-vision"
    root = default_cache()  # where the image sets are: the worker may read them as paths
    env = {
        "INFERQ_VISION_QUEUE": queue,
        "INFERQ_MODELS_DIR": str(settings.models_dir.resolve()),
        "INFERQ_IMAGE_ROOT": str(root),
        **tuning,
    }
    out: dict[str, Any] = {"settings": worker_settings({**os.environ, **env})}
    with RedisServer() as redis, tempfile.TemporaryDirectory(prefix="inferq-bench-") as tmp:
        ours = settings.model_copy(update={"redis_url": redis.url, "vision_queue": queue})
        app = bench_app(ours, redis.url)
        args = ["--loglevel", "WARNING"]
        with WorkerProcess(redis.url, ("vision",), env=env, args=args) as worker, Client(ours) as c:
            redis_pid = redis.process.pid if redis.process else None
            cpu = _Cpu(worker.pid, redis_pid)
            log(f"vision worker ready (pid {worker.pid}); warming up")
            warm = sets["imagenet"][:WARMUP_IMAGES]
            _bulk(c, warm, Path(tmp))
            _stream(app, queue, warm)
            for name, files in sets.items():
                n = len(files)
                log(f"{name}: (b) score-images, {n} images; then as paths under the image root")
                bulk = _measured(functools.partial(_bulk, c, files, Path(tmp)), cpu, n)
                paths = _measured(functools.partial(_bulk, c, files, Path(tmp), root), cpu, n)
                log(f"{name}: (a) {n} classify_image jobs")
                stream = _measured(functools.partial(_stream, app, queue, files), cpu, n)
                out[name] = {"bulk": bulk, "bulk_paths": paths, "stream": stream}
        app.close()
    return out


def _in_process(settings: Settings, sets: dict[str, list[Path]]) -> dict[str, Any]:
    from inferq.bench.vision_local import (
        LocalModel,
        cpu_ms_per_image,
        decode_agreement,
        raw_run,
        script_run,
        worker_decode,
    )

    model = LocalModel(settings)
    script_run(model, sets["imagenet"][:WARMUP_IMAGES])
    out: dict[str, Any] = {}
    for name, files in sets.items():
        log(f"{name}: (s) the in-process script, (r) the raw model")
        script = script_run(model, files)
        started = time.process_time()
        raw = raw_run(model, files, 512)
        model_ms = (time.process_time() - started) * 1000 / (512 + model.batch_size)
        out[name] = {
            "script_images_per_s": round(script["images_per_s"], 1),
            "raw_images_per_s": round(raw, 1),
            "decode_cpu_ms": round(cpu_ms_per_image(files, worker_decode(model, settings)), 2),
            "script_decode_cpu_ms": round(cpu_ms_per_image(files, model.script_load), 2),
            "model_cpu_ms": round(model_ms, 2),
            "reduced_decode_agreement": decode_agreement(model, settings, files),
        }
    return out


def _figures(worker: dict[str, Any], local: dict[str, Any]) -> dict[str, Any]:
    bulk, stream = worker["bulk"], worker["stream"]
    script = local["script_images_per_s"]
    own = local["decode_cpu_ms"] + local["model_cpu_ms"]
    return {
        **local,
        "bulk_images_per_s": bulk["images_per_s"],
        "bulk_paths_images_per_s": worker["bulk_paths"]["images_per_s"],
        "stream_images_per_s": stream["images_per_s"],
        "bulk_to_script": round(bulk["images_per_s"] / script, 3),
        "bulk_paths_to_script": round(worker["bulk_paths"]["images_per_s"] / script, 3),
        "stream_to_script": round(stream["images_per_s"] / script, 3),
        "stream_to_raw": round(stream["images_per_s"] / local["raw_images_per_s"], 3),
        "bulk_cpu_ms_per_image": bulk["cpu_ms_per_image"],
        "bulk_paths_cpu_ms_per_image": worker["bulk_paths"]["cpu_ms_per_image"],
        "stream_cpu_ms_per_image": stream["cpu_ms_per_image"],
        "bulk_message_cpu_ms": round(bulk["cpu_ms_per_image"]["worker"] - own, 2),
        "stream_message_cpu_ms": round(stream["cpu_ms_per_image"]["worker"] - own, 2),
        "stream_p50_ms": stream["p50_ms"],
        "failed": bulk["failed"] + worker["bulk_paths"]["failed"] + stream["failed"],
    }


def _compose_line(
    overrides: dict[str, str] | None, worker: dict[str, Any] | None, local: dict[str, Any]
) -> dict[str, Any]:
    """The compose vision worker's figures, where its settings differ from the defaults."""
    if overrides is None:
        return {"service": COMPOSE_SERVICE, "known": False}
    if worker is None:
        return {"service": COMPOSE_SERVICE, "known": True, "same_as_defaults": True}
    sets = {}
    for name, local_set in local.items():
        script = local_set["script_images_per_s"]
        bulk, stream = worker[name]["bulk"]["images_per_s"], worker[name]["stream"]["images_per_s"]
        sets[name] = {
            "bulk_images_per_s": bulk,
            "stream_images_per_s": stream,
            "bulk_to_script": round(bulk / script, 3),
            "stream_to_script": round(stream / script, 3),
        }
    return {
        "service": COMPOSE_SERVICE,
        "known": True,
        "same_as_defaults": False,
        "settings": worker["settings"],
        "sets": sets,
    }


def run_vision_bench(
    settings: Settings, *, imagenet: int, phone: int, compose: bool = True
) -> dict[str, Any]:
    """The figures with the shipped defaults; again with docker-compose.yml's vision
    worker settings (a second line) where they differ and ``compose``."""
    log("making the image sets (cached after the first run)")
    sets = {"imagenet": ensure_set("imagenet", imagenet), "phone": ensure_set("phone", phone)}
    worker = _through_worker(settings, sets, {})
    from_compose = compose_overrides(COMPOSE_SERVICE) if compose else None
    second = None
    if from_compose:
        log(f"again with compose's settings: {from_compose}")
        second = _through_worker(settings, sets, from_compose)
    local = _in_process(settings, sets)
    return {
        "settings": worker["settings"],
        "compose": _compose_line(from_compose, second, local)
        if compose
        else {"service": COMPOSE_SERVICE, "known": False, "skipped": True},
        "sets": {name: _figures(worker[name], local[name]) for name in sets},
        "images": {name: len(files) for name, files in sets.items()},
        "batch_size": settings.vision_max_batch_size,
        "model": settings.classifier,
        "cores": len(os.sched_getaffinity(0)),
    }


def table(result: dict[str, Any]) -> str:
    """Each set's ratios with the settings they were measured with."""
    lines = [f"vision; worker: {label(result['settings'])}"]
    for name, fig in result["sets"].items():
        lines.append(
            f"  {name}: script {fig['script_images_per_s']} images/s; bulk "
            f"{fig['bulk_images_per_s']} ({fig['bulk_to_script']}), paths "
            f"{fig['bulk_paths_images_per_s']} ({fig['bulk_paths_to_script']}), stream "
            f"{fig['stream_images_per_s']} ({fig['stream_to_script']})"
        )
    compose = result["compose"]
    status = compose_status(compose)
    if status is not None:
        lines.append(status)
    else:
        for name, fig in compose["sets"].items():
            lines.append(
                f"compose ({label(compose['settings'])}) {name}: bulk "
                f"{fig['bulk_images_per_s']} ({fig['bulk_to_script']}), stream "
                f"{fig['stream_images_per_s']} ({fig['stream_to_script']})"
            )
    lines.append(f"failed: {sum(fig['failed'] for fig in result['sets'].values())}")
    return "\n".join(lines)
