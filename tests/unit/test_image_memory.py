"""Decoding memory is known before decoding: every mode a hostile file can take stays within
``decode_bytes_needed`` (measured in a fresh process each), and the decode budget never
lets the images being decoded hold more than its limit, nor the decode stage run far
ahead of the model."""

from __future__ import annotations

import functools
import io
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker.engine.runner import BatchOutput
from worker.jobs.decoding import DecodeBudget, DecodeStage

SIDE = 3000  # 9 megapixels: large enough that the image dwarfs everything else


def _png(img: Image.Image, **kwargs: object) -> tuple[Image.Image, str, dict[str, object]]:
    return img, "PNG", dict(kwargs)


KINDS: dict[str, Callable[[], tuple[Image.Image, str, dict[str, object]]]] = {
    "RGBA PNG": lambda: _png(Image.new("RGBA", (SIDE, SIDE), (10, 200, 30, 128))),
    "16-bit PNG": lambda: _png(Image.fromarray(np.full((SIDE, SIDE), 40000, np.uint16))),
    "palette PNG, transparent colour": lambda: _png(
        Image.new("P", (SIDE, SIDE), 1), transparency=1
    ),
    "LA PNG": lambda: _png(Image.new("LA", (SIDE, SIDE), (100, 50))),
    "RGB PNG": lambda: _png(Image.new("RGB", (SIDE, SIDE), (1, 2, 3))),
    "CMYK JPEG": lambda: (Image.new("CMYK", (SIDE, SIDE), (1, 2, 3, 4)), "JPEG", {}),
    "GIF": lambda: (Image.new("P", (SIDE, SIDE), 3), "GIF", {}),
    "RGBA WebP": lambda: (Image.new("RGBA", (SIDE, SIDE), (1, 2, 3, 100)), "WEBP", {}),
}

# In a fresh process: decode and preprocess one file; print VmHWM growth and the estimate.
CHILD = """
import re, sys
from inferq.core.images import decode_bytes_needed, finish_decode, lite0_preprocess, open_image
from inferq.data import sample_image
def hwm():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
data = open(sys.argv[1], "rb").read()
lite0_preprocess(finish_decode(open_image(sample_image("chelsea").read_bytes())))
before = hwm()
img = open_image(data, max_pixels=10**8)
needed = decode_bytes_needed(img)
lite0_preprocess(finish_decode(img))
print(hwm() - before, needed)
"""


@pytest.mark.parametrize("kind", list(KINDS))
def test_decoding_holds_no_more_than_it_said_it_would(kind: str, tmp_path: Path) -> None:
    img, fmt, options = KINDS[kind]()
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    path = tmp_path / "image"
    path.write_bytes(buf.getvalue())
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True
    )
    grown, needed = map(int, done.stdout.split())
    assert grown <= needed, f"{kind}: {grown / 2**20:.0f} MiB > {needed / 2**20:.0f} MiB"
    assert grown >= needed / 3, f"{kind}: the estimate is far too high to be a measure"
    print(f"{kind}: {grown / SIDE**2:.2f} bytes a pixel, estimate {needed / SIDE**2:.0f}")


def test_the_budget_holds_images_back_until_there_is_room() -> None:
    budget = DecodeBudget(100)
    seen: list[int] = []
    lock = threading.Lock()

    def decode(nbytes: int) -> None:
        with budget.hold(nbytes):
            with lock:
                seen.append(budget.used_bytes)
            time.sleep(0.01)  # a decode taking a moment, so that holds overlap

    threads = [threading.Thread(target=decode, args=(n,)) for n in [40, 40, 40, 70, 30, 500, 10]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(seen) == len(threads)
    assert max(seen) <= 100 and budget.peak_bytes <= 100
    assert budget.used_bytes == 0


def test_an_image_larger_than_the_budget_waits_for_all_of_it() -> None:
    budget = DecodeBudget(100)
    with budget.hold(30):
        started = threading.Event()
        got: list[int] = []

        def huge() -> None:
            started.set()
            with budget.hold(10_000):
                got.append(budget.used_bytes)

        thread = threading.Thread(target=huge)
        thread.start()
        started.wait(5)
        thread.join(0.2)
        assert thread.is_alive() and got == []  # 30 bytes still held: it waits
    thread.join(5)
    assert got == [100] and budget.used_bytes == 0


def test_decoding_waits_while_enough_images_wait_for_the_model() -> None:
    """The decode stage starts an image only while fewer than ``max_waiting`` decoded
    ones wait for their forward pass: fast decoding cannot pile tensors up."""
    stage = DecodeStage(threads=3, max_waiting=2)
    passes = [Future[BatchOutput]() for _ in range(4)]
    started: list[int] = []

    def decode(i: int) -> Future[BatchOutput] | None:
        started.append(i)
        return None if i == 3 else passes[i]  # the last one is a bad image: no pass

    for i in range(4):
        stage.submit(functools.partial(decode, i))

    def wait_started(count: int) -> None:
        deadline = time.monotonic() + 5
        while len(started) < count and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a list the stage's threads fill; deadline-bounded

    wait_started(2)
    time.sleep(0.1)  # had the bound failed, a third decode would have started by now
    assert sorted(started) == [0, 1]
    passes[0].set_result(BatchOutput(np.zeros((1, 1)), 1, 1, 1, 1, 0.0, 0.0))
    wait_started(3)
    assert sorted(started) == [0, 1, 2]  # one pass done: one more decode
    passes[1].set_exception(RuntimeError("a failed pass frees its place too"))
    wait_started(4)
    stage.shutdown()
    assert sorted(started) == [0, 1, 2, 3]
