"""A classifier roll-out during `inferq score-images`, on real workers: one model per output.

The run starts on vision worker v1; v1 is stopped and v2 (another classifier file)
takes the queue mid-run. v2 refuses chunks made for v1 (model_version_mismatch) and the
run starts over on v2: every line of the output names v2. With --on-new-model fail the
run stops instead, naming both versions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from inferq.core.modelfile import file_version
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess
from tests.support import photos as imagegen

pytestmark = pytest.mark.e2e

QUEUE = "test-images-rollout"


@pytest.fixture(scope="module")
def second_models_dir(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same network in another file (one more root attribute): another version."""
    other = tmp_path_factory.mktemp("models-v2")
    path = other / "efficientnet_lite0.h5"
    shutil.copyfile(models_dir / "efficientnet_lite0.h5", path)
    with h5py.File(path, "a") as f:
        f.attrs["rolled_out"] = "v2"
    return other


def _photos(root: Path, count: int) -> Path:
    root.mkdir()
    for i in range(count):
        (root / f"{i:03d}.jpg").write_bytes(imagegen.photo(("chelsea", "coffee")[i % 2]))
    return root


def _rollout(
    redis_server: RedisServer, models: tuple[Path, Path], src: Path, out: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = {"INFERQ_VISION_QUEUE": QUEUE, "INFERQ_VISION_MAX_BATCH_SIZE": "4"}
    settings = Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})
    argv = [sys.executable, "-m", "inferq", "score-images", str(src), "-o", str(out)]
    argv += ["--chunk-images", "4", "--in-flight", "1", *extra]
    child_env = {"PATH": "/usr/bin:/bin", **settings.to_env()}
    parts = out.with_name(out.name + ".inferq-parts")
    first = {**env, "INFERQ_MODELS_DIR": str(models[0])}
    with WorkerProcess(redis_server.url, ("vision",), env=first) as v1:
        proc = subprocess.Popen(argv, env=child_env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(list(parts.glob("*.part"))) < 3:
            assert proc.poll() is None, "the run ended before the roll-out"
            assert time.monotonic() < deadline, "no parts appeared"
            time.sleep(0.02)  # polling the run's progress, deadline-bounded
        assert v1.stop() == 0
    second = {**env, "INFERQ_MODELS_DIR": str(models[1])}
    with WorkerProcess(redis_server.url, ("vision",), env=second):
        _, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(argv, proc.returncode, "", stderr)


@pytest.mark.parametrize("policy", ["restart", "fail"])
def test_a_classifier_rollout_mid_run_never_mixes_models(
    redis_server: RedisServer,
    models_dir: Path,
    second_models_dir: Path,
    tmp_path: Path,
    policy: str,
) -> None:
    src, out = _photos(tmp_path / "photos", 40), tmp_path / "labels.jsonl"
    models = (models_dir, second_models_dir)
    v1, v2 = (file_version(m / "efficientnet_lite0.h5") for m in models)
    result = _rollout(redis_server, models, src, out, "--on-new-model", policy)
    if policy == "fail":
        assert result.returncode == 3, result.stderr
        assert f"expects model version {v1}; this worker serves {v2}" in result.stderr
        assert not out.exists()
        return
    assert result.returncode == 0, result.stderr
    assert f"the model changed under the run ({v1} -> {v2})" in result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 40 and {line["model"]["version"] for line in lines} == {v2}
