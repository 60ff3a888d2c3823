"""Image jobs on the direct path (consumer -> decode stage -> batch queue -> finisher) under
the worst a stranger or a host can do: a worker killed or stopped mid-run, and 16
36-megapixel images at once that would each take hundreds of MB to decode."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image

from inferq.core.contract import ClassifyResult
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess
from producer import Client
from tests.support import delivery
from tests.support import photos as imagegen

pytestmark = pytest.mark.e2e

JOBS = 240
SIDE = 6000  # 36 megapixels


@pytest.fixture()
def vision_env(models_dir: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    return {
        "INFERQ_MODELS_DIR": str(models_dir),
        "INFERQ_VISION_QUEUE": f"test-vision-faults-{request.node.name[-24:]}",
        "INFERQ_VISIBILITY_TIMEOUT_S": "3",
    }


@pytest.fixture()
def vclient(redis_server: RedisServer, vision_env: dict[str, str]) -> Iterator[Client]:
    with Client(Settings.load({**vision_env, "INFERQ_REDIS_URL": redis_server.url})) as c:
        yield c
        delivery.drop_subscriptions(c)


def _classified(log: Path) -> dict[str, int]:
    """Job id -> how many times a worker answered it (one fixed-shape log line each)."""
    counts: dict[str, int] = {}
    for job in re.findall(r"job=(\S+) task=inferq\.classify_image", log.read_text()):
        counts[job] = counts.get(job, 0) + 1
    return counts


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_a_vision_worker_stopped_mid_run_loses_no_image(
    redis_server: RedisServer,
    vision_env: dict[str, str],
    vclient: Client,
    tmp_path: Path,
    sig: signal.Signals,
) -> None:
    photos = [imagegen.photo(name) for name in ("chelsea", "coffee", "astronaut")]
    logs = tmp_path / "first.log", tmp_path / "second.log"
    with WorkerProcess(redis_server.url, ("vision",), env=vision_env, log_path=logs[0]) as first:
        handles = [vclient.submit_image(photos[i % 3]) for i in range(JOBS)]
        delivery.wait_for_results(redis_server.url, [h.id for h in handles], 40)
        code = first.stop(timeout_s=60, sig=sig)
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    answered_by_first = _classified(logs[0])
    with (
        WorkerProcess(redis_server.url, ("vision",), env=vision_env, log_path=logs[1]),
        redis.Redis.from_url(redis_server.url) as store,
    ):
        queue = vision_env["INFERQ_VISION_QUEUE"]
        outcomes, resent = delivery.answer_all(vclient, store, handles, queue, window_s=60)
    assert all(isinstance(o, ClassifyResult) for o in outcomes.values())
    assert len(outcomes) == JOBS
    if sig == signal.SIGTERM:
        # Warm shutdown: every job the first worker held (decoding, batched or stored) was
        # answered by it and acked, so the second worker ran none of those again.
        again = set(answered_by_first) & set(_classified(logs[1]))
        assert not again and not resent, f"{len(again)} run twice"
    print(f"{sig.name}: {JOBS} images, 0 lost, first worker answered {len(answered_by_first)}")


def _huge_images() -> list[bytes]:
    """36-megapixel images a few hundred kB on the wire, each of a costly kind to decode."""
    rgba = Image.new("RGBA", (SIDE, SIDE), (30, 120, 200, 180))
    grey16 = Image.fromarray(np.full((SIDE, SIDE), 30000, np.uint16))
    palette = Image.new("P", (SIDE, SIDE), 1)
    kinds = [
        imagegen.encode(rgba, "PNG"),
        imagegen.encode(grey16, "PNG"),
        imagegen.encode(palette, "PNG", transparency=0),
        imagegen.encode(rgba, "WEBP", lossless=False, quality=50),
    ]
    return [kinds[i % len(kinds)] for i in range(16)]


def _peak_rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) * 1024  # type: ignore[union-attr]


def test_sixteen_36_megapixel_images_at_once_stay_within_the_decode_budget(
    redis_server: RedisServer, vision_env: dict[str, str], vclient: Client
) -> None:
    images = _huge_images()
    assert max(len(i) for i in images) < 2_000_000
    with WorkerProcess(redis_server.url, ("vision",), env=vision_env) as proc:
        vclient.classify(imagegen.photo(), timeout_s=60)  # warm: the model has run once
        before = _peak_rss_bytes(proc.pid)
        handles = [vclient.submit_image(data) for data in images]
        results = [h.wait(300) for h in handles]
        grown = _peak_rss_bytes(proc.pid) - before
        assert proc.process is not None and proc.process.poll() is None
    assert all(len(r.labels) == 5 for r in results)
    print(f"16 x 36 MP images: peak RSS grew {grown / 2**20:.0f} MiB")
    assert grown <= 2 * 2**30
