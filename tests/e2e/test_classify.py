"""Classification end to end: real Redis, a real vision worker, the real Lite0 model."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from inferq.core.constants import CLASSIFY_CHUNK_TASK, CLASSIFY_TASK
from inferq.core.contract import ClassifyChunkResult
from inferq.core.images import decode_image, source_short_side
from inferq.core.modelfile import file_version
from inferq.core.settings import Settings
from inferq.errors import InvalidInput
from inferq.ops.worker_process import WorkerProcess
from producer import Client
from tests.support import photos as imagegen
from tests.support.harness import SCHEMA_DIR, VISION_QUEUE, schema
from tests.support.photos import CATS

pytestmark = pytest.mark.e2e


def test_chelsea_is_a_cat_and_coffee_is_espresso(vclient: Client, models_dir: Path) -> None:
    cat = vclient.classify(imagegen.photo("chelsea"), top_k=3)
    assert cat.labels[0].label in CATS
    assert {lb.label for lb in cat.labels} == {"tiger cat", "Egyptian cat", "tabby"}
    coffee = vclient.classify(imagegen.photo("coffee"), top_k=3)
    assert {"espresso", "cup"} & {lb.label for lb in coffee.labels}
    assert coffee.model.version == file_version(models_dir / "efficientnet_lite0.h5")
    assert coffee.labels[0].wnid.startswith("n")


def test_worker_and_in_process_model_agree(vclient: Client, vision_settings: Settings) -> None:
    from worker.loading.classifier import load_classifier

    loaded = load_classifier(vision_settings)
    data = imagegen.photo("astronaut")  # 512x512: the worker decodes it at half size
    x = loaded.preprocess(decode_image(data, min_short_side=source_short_side(224)))
    probs = np.asarray(loaded.keras_model(x[None], training=False))[0]
    local = loaded.labels.top_k(probs, 5)
    remote = vclient.classify(data, top_k=5).labels
    assert [lb.wnid for lb in remote] == [p["wnid"] for p in local]
    np.testing.assert_allclose([lb.score for lb in remote], [p["score"] for p in local], rtol=1e-4)


def test_a_path_under_the_image_root(vclient: Client) -> None:
    result = vclient.submit_image(path="cats/chelsea.jpg", top_k=1).wait(60)
    assert result.labels[0].label in CATS


BAD = {
    "invalid_base64": {"image_b64": "not base64!!"},
    "empty_image": {"image_b64": ""},
    "not_an_image": {"image_b64": base64.b64encode(b"just some text, named cat.jpg").decode()},
    "truncated_image": {"image_b64": base64.b64encode(imagegen.photo()[:4000]).decode()},
    "too_many_pixels": {
        "image_b64": base64.b64encode(imagegen.png_claiming(40_000, 40_000)).decode()
    },
    "too_many_bytes": {"image_b64": base64.b64encode(b"\xff" * 2_100_000).decode()},
    "path_outside_root": {"path": "../secret.jpg"},
    "path_outside_root ": {"path": "escape.jpg"},  # a symlink leaving the root
    "path_outside_root  ": {"path": "/etc/passwd"},
    "file_not_found": {"path": "cats/missing.jpg"},
    "image_source": {},
    "image_source ": {"image_b64": "aGk=", "path": "cats/chelsea.jpg"},
    "invalid_top_k": {"image_b64": base64.b64encode(imagegen.photo()).decode(), "top_k": 0},
}
ODD_BUT_VALID = {
    "animated_gif": imagegen.animated_gif,
    "sixteen_bit_png": imagegen.sixteen_bit_png,
    "cmyk_jpeg": imagegen.cmyk_jpeg,
    "rgba_png": imagegen.rgba_png,
}


def test_bad_images_fail_alone_while_their_batch_mates_are_classified(vclient: Client) -> None:
    app, queue = vclient.app, vclient.settings.vision_queue
    good = [vclient.submit_image(imagegen.photo()) for _ in range(3)]
    bad = {code: app.send_task(CLASSIFY_TASK, kwargs=kw, queue=queue) for code, kw in BAD.items()}
    odd = {name: vclient.submit_image(make()) for name, make in ODD_BUT_VALID.items()}
    for code, result in bad.items():
        result.get(timeout=120, propagate=False)
        assert isinstance(result.result, InvalidInput), (code, result.result)
        assert result.result.details[0]["code"] == code.strip(), result.result.info
    batches = [h.wait(120) for h in good] + [h.wait(120) for h in odd.values()]
    assert all(r.labels[0].label in CATS for r in batches[:3])
    assert max(r.batch.jobs for r in batches) > 1
    for name, result in zip(odd, batches[3:], strict=True):
        assert len(result.labels) == 5, name


def test_results_follow_the_published_schema(vclient: Client) -> None:
    handle = vclient.submit_image(imagegen.photo("coffee"), top_k=2)
    handle.wait(60)
    schema = json.loads((SCHEMA_DIR / f"{CLASSIFY_TASK}.result.schema.json").read_text())
    jsonschema.validate(handle._result.result, schema)


def test_classify_command(
    vision_worker: WorkerProcess, vision_settings: Settings, tmp_path: Path
) -> None:
    cat, text = tmp_path / "cat.jpg", tmp_path / "notes.jpg"
    cat.write_bytes(imagegen.photo())
    text.write_text("not an image")
    env = {
        **os.environ,
        "INFERQ_REDIS_URL": vision_settings.broker_url,
        "INFERQ_VISION_QUEUE": VISION_QUEUE,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "inferq", "classify", str(cat), str(text), "--top", "2", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    first, second = (json.loads(line) for line in proc.stdout.splitlines())
    assert first["source"] == str(cat) and first["labels"][0]["label"] in CATS
    assert len(first["labels"]) == 2 and set(first["labels"][0]) == {"wnid", "label", "score"}
    assert second["source"] == str(text) and second["error"]["code"] == "invalid_input"


def test_a_chunk_answers_each_image_in_order_and_bad_ones_alone(vclient: Client) -> None:
    app, queue = vclient.app, vclient.settings.vision_queue
    photo = base64.b64encode(imagegen.photo()).decode()
    items = [
        {"image_b64": photo},
        {"image_b64": base64.b64encode(b"not an image").decode()},
        {"path": "cats/chelsea.jpg"},
        {"path": "../secret.jpg"},
        {"image_b64": photo, "path": "cats/chelsea.jpg"},
        {"picture": photo},
        {"image_b64": base64.b64encode(imagegen.rgba_png()).decode()},
        {"blob": vclient.store_images([imagegen.photo()], ttl_s=60)[0].id},
        {"blob": "0" * 32},  # never stored, or expired
        {"blob": "../../etc/passwd"},
    ]
    sent = app.send_task(CLASSIFY_CHUNK_TASK, kwargs={"images": items, "top_k": 2}, queue=queue)
    stored = sent.get(timeout=120)
    jsonschema.validate(stored, schema(f"{CLASSIFY_CHUNK_TASK}.result"))
    result = ClassifyChunkResult.model_validate(stored)
    codes = [r.error.errors[0].code if r.error else None for r in result.results]
    bad = ["not_an_image", None, "path_outside_root", "image_source", "image_source"]
    assert codes == [None, *bad, None, None, "blob_not_found", "invalid_blob"]
    for r in (result.results[i] for i in (0, 2, 6, 7)):
        assert r.labels is not None and len(r.labels) == 2 and r.labels[0].label in CATS
    assert result.passes >= 1 and result.model.version


def test_a_chunk_over_the_image_limit_is_refused_whole(vclient: Client) -> None:
    photo = {"image_b64": base64.b64encode(imagegen.photo()).decode()}
    handle = vclient.app.send_task(
        CLASSIFY_CHUNK_TASK, kwargs={"images": [photo] * 65}, queue=vclient.settings.vision_queue
    )
    handle.get(timeout=60, propagate=False)
    assert isinstance(handle.result, InvalidInput)
    assert handle.result.details[0]["code"] == "too_many_images"
