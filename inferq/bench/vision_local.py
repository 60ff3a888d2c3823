"""The two in-process sides of `inferq bench vision`: (s) the script a user would write
instead of the queue, and (r) the raw model on tensors already preprocessed.

Both use the model file the worker serves, through the same compiled function per
batch size (worker.engine.forward), so the comparison is about everything around
the model. (s) is a fixed baseline: a full Pillow decode (no reduced-size JPEG
decoding), EXIF orientation applied, the classifier's own crop, resize and scaling,
decoding on a thread pool of one thread per core while the main thread runs the
batches; the model's threads share the same cores, as the worker's do.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from inferq.core.images import source_short_side
from inferq.core.settings import Settings
from worker.engine.forward import KerasForward
from worker.engine.runner import bucket_for, bucket_sizes_for
from worker.jobs.decoding import DecodeBudget, decode_input
from worker.loading.classifier import LoadedClassifier, load_classifier


class LocalModel:
    """The served classifier's file in this process, one compiled function per bucket."""

    def __init__(self, settings: Settings) -> None:
        self.loaded: LoadedClassifier = load_classifier(settings)
        self.batch_size = settings.vision_max_batch_size
        loaded = self.loaded
        sizes = bucket_sizes_for(self.batch_size)
        self.forward = KerasForward(loaded.keras_model, loaded.name, loaded.version, sizes)

    def run(self, batch: list[np.ndarray]) -> np.ndarray:
        """Probabilities for up to one batch of preprocessed images (padded as the runner pads)."""
        x = np.stack(batch).astype(np.float32)
        padded = bucket_for(len(x), self.forward.bucket_sizes)
        if padded > len(x):
            x = np.concatenate([x, np.zeros((padded - len(x), *x.shape[1:]), np.float32)])
        return self.forward.forward(x)[: len(batch)]

    def script_load(self, path: Path) -> np.ndarray:
        """What a plain script does with one file: full decode, upright, RGB, preprocess."""
        with Image.open(path) as img:
            upright = ImageOps.exif_transpose(img) or img
            return self.loaded.preprocess(upright.convert("RGB"))


def worker_decode(model: LocalModel, settings: Settings) -> Callable[[Path], np.ndarray]:
    """What a worker does with one file's bytes: its decode, reduced-size for JPEGs."""
    budget = DecodeBudget(settings.decode_budget_mb * 2**20)
    short = source_short_side(model.loaded.input_size)
    preprocess = model.loaded.preprocess

    def load(path: Path) -> np.ndarray:
        return decode_input(path.read_bytes(), settings, short, preprocess, budget)

    return load


def _batches(items: Iterator[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    while batch := list(islice(items, size)):
        yield batch


def script_run(model: LocalModel, files: Sequence[Path]) -> dict[str, Any]:
    """(s): the files decoded on a thread pool, run in batches; images/s and top-1 indices.
    ``pool.map`` submits every file at once, so decoding runs ahead of the model."""
    threads = len(os.sched_getaffinity(0))
    top1: list[int] = []
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for batch in _batches(pool.map(model.script_load, files), model.batch_size):
            top1.extend(int(i) for i in np.argmax(model.run(batch), axis=1))
    return {"images_per_s": len(files) / (time.perf_counter() - started), "top1": top1}


def raw_run(model: LocalModel, files: Sequence[Path], images: int) -> float:
    """(r): images/s of the model alone on full batches of preprocessed tensors."""
    batch = [model.script_load(files[i % len(files)]) for i in range(model.batch_size)]
    model.run(batch)  # warm
    passes = max(1, -(-images // model.batch_size))
    started = time.perf_counter()
    for _ in range(passes):
        model.run(batch)
    return passes * model.batch_size / (time.perf_counter() - started)


def cpu_ms_per_image(files: Sequence[Path], load: Any) -> float:
    """CPU milliseconds per image of ``load`` (decode + preprocess), one thread, this process."""
    started = time.process_time()
    for path in files:
        load(path)
    return (time.process_time() - started) * 1000 / len(files)


# A top-1 class that leads the second by less than this is a near tie: any change of
# decoder or resize may turn it.
CLEAR_LEAD = 0.05


def agreement(full: np.ndarray, reduced: np.ndarray) -> dict[str, float]:
    """How the labels of reduced-size decodes compare with full-size ones (rows: images,
    columns: class probabilities): the share with the same top-1 class, overall and where
    the full decode's top-1 leads clearly; the largest change of a score among each full
    decode's top five classes."""
    same = np.argmax(full, axis=1) == np.argmax(reduced, axis=1)
    top5 = np.argsort(-full, axis=1)[:, :5]
    rows = np.arange(len(full))[:, None]
    diff = np.abs(full[rows, top5] - reduced[rows, top5])
    lead = full[rows[:, 0], top5[:, 0]] - full[rows[:, 0], top5[:, 1]]
    clear = lead > CLEAR_LEAD
    return {
        "top1_same": round(float(same.mean()), 4),
        "clear_lead_images": int(clear.sum()),
        "top1_same_where_clear": round(float(same[clear].mean()), 4) if clear.any() else 1.0,
        "top5_max_score_diff": round(float(diff.max()), 4),
    }


def decode_agreement(
    model: LocalModel, settings: Settings, files: Sequence[Path]
) -> dict[str, Any]:
    """Labels of the worker's reduced-size decode against the script's full decode."""
    reduced_load = worker_decode(model, settings)
    full, reduced = [], []
    for start in range(0, len(files), model.batch_size):
        batch = files[start : start + model.batch_size]
        full.append(model.run([model.script_load(p) for p in batch]))
        reduced.append(model.run([reduced_load(p) for p in batch]))
    return {"images": len(files), **agreement(np.concatenate(full), np.concatenate(reduced))}
