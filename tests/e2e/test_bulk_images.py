"""`inferq score-images` end to end: real Redis, a real vision worker, real images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inferq.core.settings import Settings
from inferq.ops.worker_process import WorkerProcess
from producer.bulk.score_images import BLOB_MIN_BYTES
from tests.support import photos as imagegen
from tests.support.photos import CATS
from tests.support.redis_clients import redis_client

pytestmark = pytest.mark.e2e


def _run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "INFERQ_REDIS_URL": settings.broker_url,
        "INFERQ_VISION_QUEUE": settings.vision_queue,
    }
    argv = [sys.executable, "-m", "inferq", "score-images", *args]
    return subprocess.run(argv, check=False, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "b" / "deep").mkdir(parents=True)
    (root / "a-chelsea.jpg").write_bytes(imagegen.photo("chelsea"))
    (root / "b" / "coffee.jpg").write_bytes(imagegen.photo("coffee"))
    (root / "b" / "deep" / "astronaut.jpg").write_bytes(imagegen.photo("astronaut"))
    (root / "b" / "notes.jpg").write_text("a text file named .jpg")
    noise = np.random.default_rng(3).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    (root / "b" / "noise.jpg").write_bytes(imagegen.encode(Image.fromarray(noise), "JPEG"))
    (root / "b" / "empty.png").write_bytes(b"")
    (root / "b" / "readme.txt").write_text("not an image suffix: not listed")
    return root


def test_a_directory_is_classified_in_a_stable_order(
    vision_worker: WorkerProcess,
    vision_settings: Settings,
    photos: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "labels.jsonl"
    result = _run(vision_settings, str(photos), "-o", str(out), "--chunk-images", "2", "--top", "3")
    assert result.returncode == 1, result.stderr  # two unreadable images, --max-errors 0
    assert "scored 6 images: ok=4 failed=2" in result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in lines] == [
        "a-chelsea.jpg",
        "b/coffee.jpg",
        "b/deep/astronaut.jpg",
        "b/empty.png",
        "b/noise.jpg",
        "b/notes.jpg",
    ]
    assert lines[0]["labels"][0]["label"] in CATS and len(lines[0]["labels"]) == 3
    assert lines[0]["error"] is None and lines[0]["model"]["name"]
    assert lines[3]["labels"] is None and lines[3]["error"].startswith("invalid_input")
    assert lines[5]["error"].startswith("invalid_input")
    # The large file went as a blob in Redis, the others inline; no blob is left behind.
    assert (photos / "b" / "noise.jpg").stat().st_size >= BLOB_MIN_BYTES
    assert len(lines[4]["labels"]) == 3 and lines[4]["error"] is None
    assert redis_client(vision_settings.broker_url).keys("inferq-image:*") == []


def test_a_manifest_keeps_its_order_and_reports_missing_files(
    vision_worker: WorkerProcess,
    vision_settings: Settings,
    photos: Path,
    tmp_path: Path,
) -> None:
    manifest = photos / "list.txt"
    manifest.write_text("b/coffee.jpg\n# a comment\nmissing.jpg\na-chelsea.jpg\n")
    out = tmp_path / "m.jsonl"
    result = _run(vision_settings, str(manifest), "-o", str(out), "--max-errors", "1")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in lines] == ["b/coffee.jpg", "missing.jpg", "a-chelsea.jpg"]
    assert lines[1]["error"].startswith("unreadable_file")
    assert lines[2]["labels"][0]["label"] in CATS
