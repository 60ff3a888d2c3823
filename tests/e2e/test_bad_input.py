"""Every kind of bad input, sent through real workers among good jobs of the same burst.

Each bad job must end with its own typed error and code (docs/bad-input.md), the good
jobs beside it with their results, and the worker must stay up. Odd but valid images
are classified, not refused. Regression jobs go to the session's worker; images to one
vision worker started once for this file.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from celery.result import AsyncResult
from PIL import Image

from inferq.core.constants import CLASSIFY_TASK, COURSE_FEATURES, PREDICT_TASK
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess
from inferq.tools.sample_data import generate
from producer import Client
from producer.handles import failure
from tests.support import photos as imagegen
from tests.support.harness import E2E_QUEUE, SCHEMA_DIR
from tests.support.messages import TrapPickle, send_pickle, send_raw
from tests.support.redis_clients import redis_client

pytestmark = pytest.mark.e2e

VISION_QUEUE = "test-bad-input-vision"
MAX_IMAGE_BYTES = 2_000_000
CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
Expected = list[tuple[str | None, str]]  # (field, code) of each error, in order


def _rows(n: int, seed: int = 11) -> list[dict[str, float]]:
    cols = generate(n, seed)
    return [{f: float(cols[f][i]) for f in COURSE_FEATURES} for i in range(n)]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _bad_rows(row: dict[str, float]) -> dict[str, tuple[dict[str, Any], Expected]]:
    """What a bad regression job sends (its kwargs) and the errors it must get."""

    def one(field: str, value: Any) -> dict[str, Any]:
        return {"rows": {**row, field: value}}

    missing = {k: v for k, v in row.items() if k != "critic_rating"}
    return {
        "a string for a number": (one("unit_price", "59.99"), [("unit_price", "not_a_number")]),
        "a boolean": (one("is_action", True), [("is_action", "not_a_number")]),
        "null": (one("critic_rating", None), [("critic_rating", "not_a_number")]),
        "a list": (one("unit_price", [59.99]), [("unit_price", "not_a_number")]),
        "an object": (one("unit_price", {"usd": 1}), [("unit_price", "not_a_number")]),
        "NaN": (one("is_sports", float("nan")), [("is_sports", "not_finite")]),
        "+inf": (one("unit_price", float("inf")), [("unit_price", "not_finite")]),
        "-inf": (one("unit_price", float("-inf")), [("unit_price", "not_finite")]),
        "a huge magnitude": (one("unit_price", 1e300), [("unit_price", "out_of_range")]),
        "a huge negative": (one("critic_rating", -1e13), [("critic_rating", "out_of_range")]),
        "a missing field": ({"rows": missing}, [("critic_rating", "missing_field")]),
        "an unknown field": (one("colour", 1), [("colour", "unknown_field")]),
        "an empty row": ({"rows": {}}, [(f, "missing_field") for f in COURSE_FEATURES]),
        "no rows": ({"rows": []}, [(None, "empty_job")]),
        "a row that is no object": ({"rows": [row, 5]}, [(None, "row_not_an_object")]),
        "rows that are no list": ({"rows": "all of them"}, [(None, "rows_not_a_list")]),
        "too many rows": ({"rows": [row] * 101}, [(None, "too_many_rows")]),
        "a misspelt argument": (
            {"row": row},
            [("row", "unknown_argument"), ("rows", "missing_argument")],
        ),
        "no arguments": ({}, [("rows", "missing_argument")]),
    }


def _codes(result: AsyncResult) -> tuple[str, Expected]:
    """The job's typed error: its code and (field, code) of each detail."""
    result.get(timeout=60, propagate=False)
    error = failure(result.state, result.result)
    return error.info["code"], [(d.get("field"), d["code"]) for d in error.details]


def _assert_alive(proc: WorkerProcess) -> None:
    assert proc.process is not None and proc.process.poll() is None, proc.log_tail()
    assert "Unrecoverable error" not in proc.log_tail(1_000_000)


def test_bad_rows_fail_alone_among_good_jobs(client: Client, worker: WorkerProcess) -> None:
    rows = _rows(24)
    cases = _bad_rows(rows[0])
    good, bad = [], {}
    for i, (name, (kwargs, _)) in enumerate(cases.items()):
        good.append(client.submit(rows[i % len(rows)]))
        bad[name] = client.app.send_task(PREDICT_TASK, kwargs=kwargs, queue=E2E_QUEUE)
    good += [client.submit(row) for row in rows]
    for name, result in bad.items():
        code, details = _codes(result)
        assert (code, details) == ("invalid_input", cases[name][1]), name
    results = [h.wait(60) for h in good]
    assert all(len(r.earnings_usd) == 1 and r.earnings_usd[0] > 0 for r in results)
    assert max(r.batch.jobs for r in results) > 1  # good jobs still shared forward passes
    _assert_alive(worker)


def test_bad_messages_get_typed_errors_and_the_worker_lives_on(
    client: Client, worker: WorkerProcess, tmp_path: Path
) -> None:
    """Envelope-level bad input: what Celery itself would drop or die of."""
    app, row = client.app, _rows(1)[0]
    trap = tmp_path / "unpickled"
    bad: dict[str, tuple[AsyncResult, str]] = {
        "an unknown task name": (
            app.send_task("inferq.predict_earning", kwargs={"rows": row}, queue=E2E_QUEUE),
            "unknown_task",
        ),
        "a pickle message": (
            send_pickle(app, PREDICT_TASK, {"rows": TrapPickle(trap)}, E2E_QUEUE),
            "content_refused",
        ),
        "a YAML content type": (
            send_raw(app, E2E_QUEUE, PREDICT_TASK, b"rows: 1", content_type="application/x-yaml"),
            "content_refused",
        ),
        "a body that is not JSON": (
            send_raw(app, E2E_QUEUE, PREDICT_TASK, b"{rows: [}"),
            "invalid_message",
        ),
        "a body that is no task": (
            send_raw(app, E2E_QUEUE, PREDICT_TASK, b'{"rows": []}'),
            "invalid_message",
        ),
        "keyword arguments that are no object": (
            send_raw(app, E2E_QUEUE, PREDICT_TASK, b"[[], [], {}]"),
            "invalid_message",
        ),
        "a header of the wrong type": (
            send_raw(app, E2E_QUEUE, PREDICT_TASK, b'[[], {"rows": {}}, {}]', headers={"eta": 5}),
            "invalid_message",
        ),
        "a time limit that is no pair": (  # Celery fails on it only when it runs the job
            send_raw(app, E2E_QUEUE, PREDICT_TASK, b"[[], {}, {}]", headers={"timelimit": "x"}),
            "invalid_message",
        ),
    }
    good = [client.submit(r) for r in _rows(8, seed=12)]
    for name, (result, code) in bad.items():
        assert _codes(result)[0] == code, name
    assert all(h.wait(60).earnings_usd[0] > 0 for h in good)
    assert not trap.exists(), "the worker unpickled a message"
    # What a consumer that does not use Python reads: the contract's job error.
    raw = redis_client(client.settings.broker_url).get(
        f"celery-task-meta-{bad['a pickle message'][0].id}"
    )
    stored = json.loads(raw or b"{}")
    assert stored["status"] == "FAILURE" and stored["result"]["exc_type"] == "ContentRefused"
    schema = json.loads((SCHEMA_DIR / "inferq.job_error.schema.json").read_text())
    jsonschema.validate(stored["result"]["exc_message"][0], schema)
    _assert_alive(worker)


# ---- images: one vision worker for this file ----


def _la_png() -> bytes:
    return imagegen.encode(Image.open(io.BytesIO(imagegen.photo())).convert("LA"), "PNG")


def _palette_with_transparency() -> bytes:
    img = Image.open(io.BytesIO(imagegen.photo())).convert("P")
    return imagegen.encode(img, "PNG", transparency=0)


def _exif_rotated_jpeg() -> bytes:
    """Stored on its side, with the EXIF orientation that turns it upright."""
    img = Image.open(io.BytesIO(imagegen.photo())).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to view
    return imagegen.encode(img, "JPEG", exif=exif)


ODD_BUT_VALID: dict[str, Callable[[], bytes]] = {
    "an animated GIF (first frame a cat, then black)": imagegen.animated_gif,
    "a 16-bit PNG": imagegen.sixteen_bit_png,
    "a CMYK JPEG": imagegen.cmyk_jpeg,
    "an RGBA PNG": imagegen.rgba_png,
    "a greyscale PNG with alpha": _la_png,
    "a palette PNG with a transparent colour": _palette_with_transparency,
    "an EXIF-rotated JPEG": _exif_rotated_jpeg,
}


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("bad-images")
    root = base / "root"
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "chelsea.jpg").write_bytes(imagegen.photo("chelsea"))
    (root / "notes.jpg").write_text("a text file, named like a photo\n")
    (root / "empty.jpg").write_bytes(b"")
    (root / "cut.jpg").write_bytes(imagegen.photo()[:4000])
    (root / "huge.png").write_bytes(b"\x89PNG" + b"\0" * MAX_IMAGE_BYTES)
    (base / "secret.jpg").write_bytes(imagegen.photo("coffee"))
    (root / "escape.jpg").symlink_to(base / "secret.jpg")
    (root / "loop-a").symlink_to(root / "loop-b")
    (root / "loop-b").symlink_to(root / "loop-a")
    (root / "a-folder.jpg").mkdir()
    return root


@pytest.fixture(scope="module")
def vision_client(
    redis_server: RedisServer, models_dir: Path, image_root: Path
) -> Iterator[tuple[Client, WorkerProcess]]:
    env = {
        "INFERQ_MODELS_DIR": str(models_dir),
        "INFERQ_VISION_QUEUE": VISION_QUEUE,
        "INFERQ_VISION_MAX_BATCH_SIZE": "8",
        "INFERQ_VISION_MAX_WAIT_MS": "100",
        "INFERQ_IMAGE_ROOT": str(image_root),
        "INFERQ_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
        "INFERQ_MAX_IMAGE_PIXELS": str(5_000_000),
    }
    settings = Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})
    with WorkerProcess(redis_server.url, ("vision",), env=env) as proc, Client(settings) as c:
        yield c, proc


def _bad_images() -> dict[str, tuple[dict[str, Any], Expected]]:
    photo = _b64(imagegen.photo())
    return {
        "invalid base64": ({"image_b64": "not base64!!"}, [("image_b64", "invalid_base64")]),
        "base64 that is no string": ({"image_b64": 12345}, [("image_b64", "not_a_string")]),
        "zero bytes": ({"image_b64": ""}, [("image_b64", "empty_image")]),
        "a zero-byte file": ({"path": "empty.jpg"}, [("path", "empty_image")]),
        "a payload over the size limit": (
            {"image_b64": _b64(b"\xff" * (MAX_IMAGE_BYTES + 100_000))},
            [("image_b64", "too_many_bytes")],
        ),
        "a file over the size limit": ({"path": "huge.png"}, [("path", "too_many_bytes")]),
        "a truncated JPEG": (
            {"image_b64": _b64(imagegen.photo()[:4000])},
            [("image_b64", "truncated_image")],
        ),
        "a truncated JPEG file": ({"path": "cut.jpg"}, [("path", "truncated_image")]),
        "a text file named .jpg": ({"path": "notes.jpg"}, [("path", "not_an_image")]),
        "text bytes": ({"image_b64": _b64(b"GIF? no.")}, [("image_b64", "not_an_image")]),
        "a decompression bomb": (
            {"image_b64": _b64(imagegen.png_claiming(40_000, 40_000))},
            [("image_b64", "too_many_pixels")],
        ),
        "a path with ../": ({"path": "../secret.jpg"}, [("path", "path_outside_root")]),
        "a symlink leaving the root": ({"path": "escape.jpg"}, [("path", "path_outside_root")]),
        "an absolute path": ({"path": "/etc/passwd"}, [("path", "path_outside_root")]),
        "a missing file": ({"path": "cats/missing.jpg"}, [("path", "file_not_found")]),
        "a folder named .jpg": ({"path": "a-folder.jpg"}, [("path", "file_not_found")]),
        "a path with a NUL byte": ({"path": "cats/chelsea.jpg\0.png"}, [("path", "invalid_path")]),
        "a name over 255 bytes": ({"path": "x" * 300 + ".jpg"}, [("path", "invalid_path")]),
        "a path over PATH_MAX": ({"path": "/".join(["y" * 200] * 30)}, [("path", "invalid_path")]),
        "a symlink loop": ({"path": "loop-a"}, [("path", "invalid_path")]),
        "a path through a symlink loop": ({"path": "loop-a/x.jpg"}, [("path", "invalid_path")]),
        "a path that is no string": ({"path": ["cats"]}, [("path", "not_a_string")]),
        "no image": ({}, [("image_b64", "image_source")]),
        "two images": (
            {"image_b64": photo, "path": "cats/chelsea.jpg"},
            [("image_b64", "image_source")],
        ),
        "top_k 0": ({"image_b64": photo, "top_k": 0}, [("top_k", "invalid_top_k")]),
        "top_k a string": ({"image_b64": photo, "top_k": "5"}, [("top_k", "invalid_top_k")]),
        "an unknown argument": ({"image": photo}, [("image", "unknown_argument")]),
    }


def test_bad_images_fail_alone_while_odd_ones_are_classified(
    vision_client: tuple[Client, WorkerProcess], tmp_path: Path
) -> None:
    client, proc = vision_client
    app, queue = client.app, client.settings.vision_queue
    cases = _bad_images()
    good = [client.submit_image(imagegen.photo()), client.submit_image(path="cats/chelsea.jpg")]
    bad = {
        name: app.send_task(CLASSIFY_TASK, kwargs=kw, queue=queue)
        for name, (kw, _) in cases.items()
    }
    trap = tmp_path / "unpickled"
    pickled = send_pickle(app, CLASSIFY_TASK, {"image_b64": TrapPickle(trap)}, queue)
    odd = {name: client.submit_image(make()) for name, make in ODD_BUT_VALID.items()}
    good.append(client.submit_image(imagegen.photo()))
    for name, result in bad.items():
        assert _codes(result) == ("invalid_input", cases[name][1]), name
    assert _codes(pickled)[0] == "content_refused" and not trap.exists()
    results = [h.wait(120) for h in good]
    assert all(r.labels[0].label in CATS for r in results)
    for name, handle in odd.items():
        assert handle.wait(120).labels[0].label in CATS, name
    assert max(r.batch.jobs for r in results) > 1
    _assert_alive(proc)
