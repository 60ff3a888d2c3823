"""GPU placement, tested on a CPU: pinning, memory growth, mixed precision.

The machines running this suite have no GPU. What needs one (TensorFlow seeing
the pinned GPU, memory growth taking effect) is tested up to TensorFlow's API
with fakes; pinning is read from the real child processes' environments, and
mixed precision runs for real, on the CPU.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from inferq.core.constants import COURSE_FEATURES
from inferq.core.modelfile import file_version, read_meta
from inferq.core.settings import Settings, SettingsError
from inferq.errors import ModelFileError
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess
from inferq.tools.sample_data import generate
from producer import Client
from tests.support.photos import photo
from tests.support.served import served_regressor
from worker.loading import devices

# Their float32 top-1 leads the runner-up by 0.012 to 0.94 in probability, several times
# what float16 moves a probability here (about 0.003). (A mirrored chelsea is left out:
# two cat classes tie within 0.004 there, and float16 may break such a tie either way.)
PHOTOS = ("chelsea", "coffee", "astronaut")


def test_process_i_gets_gpu_i_modulo_the_list() -> None:
    pinned = [
        Settings.load({}, gpus=(3, 5), process_index=i).cuda_env()["CUDA_VISIBLE_DEVICES"]
        for i in range(5)
    ]
    assert pinned == ["3", "5", "3", "5", "3"]
    # Unset: CUDA_VISIBLE_DEVICES is left alone.
    assert Settings.load({}, process_index=4).cuda_env() == {}


@pytest.mark.parametrize(("value", "gpus"), [("0,1", (0, 1)), (" 2 , 3 ", (2, 3)), ("", None)])
def test_gpus_parse_from_a_comma_list(value: str, gpus: tuple[int, ...] | None) -> None:
    assert Settings.load({"INFERQ_GPUS": value}).gpus == gpus


@pytest.mark.parametrize("value", ["-1", "a", "0,,1", "1.5", "GPU-0"])
def test_gpus_that_are_not_ids_are_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match=r"INFERQ_GPUS: .*non-negative integers.*like 0,1"):
        Settings.load({"INFERQ_GPUS": value})


def test_gpu_and_precision_defaults_change_nothing() -> None:
    s = Settings.load({})
    assert (s.gpus, s.mixed_precision) == (None, False)
    assert Settings.load({"INFERQ_MIXED_PRECISION": "true"}).mixed_precision


class _FakeGpu:
    def __init__(self, index: int) -> None:
        self.name = f"/physical_device:GPU:{index}"


def test_memory_growth_is_turned_on_for_every_gpu(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import tensorflow as tf

    grown: list[str] = []

    def set_memory_growth(gpu: _FakeGpu, enable: bool) -> None:
        if gpu.name.endswith(":2"):
            raise RuntimeError("Physical devices cannot be modified after being initialized")
        grown.append(f"{gpu.name}={enable}")

    fakes = [_FakeGpu(i) for i in range(3)]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind: fakes)
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", set_memory_growth)
    assert devices.enable_memory_growth() == ["GPU:0", "GPU:1", "GPU:2"]
    assert grown == ["/physical_device:GPU:0=True", "/physical_device:GPU:1=True"]
    # A GPU touched too early keeps working, and the log says growth is off there.
    assert "memory growth not set on /physical_device:GPU:2" in capfd.readouterr().err


def test_configure_pins_by_process_index_and_describes_the_devices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # restored after the test
    settings = Settings.load({}, gpus=(3, 5), process_index=1, mixed_precision=True)
    line = "devices=CPU-only cuda_visible_devices=5 precision=mixed_float16"
    assert devices.configure(settings) == line
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"


def test_without_inferq_gpus_the_operators_cuda_devices_stay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    assert "cuda_visible_devices=2 precision=float32" in devices.configure(Settings.load({}))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"


def _children(pid: int) -> list[int]:
    kids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:  # the process ended while we looked
            continue
        if re.search(rf"^PPid:\s+{pid}$", text, re.MULTILINE):
            kids.append(int(status.parent.name))
    return kids


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def _pinned_children(pid: int) -> dict[str, str]:
    """INFERQ_PROCESS_INDEX -> CUDA_VISIBLE_DEVICES of the children that have exec'd."""
    # Between fork and exec a child still shows its parent's environment, without an index.
    envs = [_environ(kid) for kid in _children(pid)]
    return {
        e["INFERQ_PROCESS_INDEX"]: e.get("CUDA_VISIBLE_DEVICES", "unset")
        for e in envs
        if "INFERQ_PROCESS_INDEX" in e
    }


@pytest.mark.e2e
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_concurrency_gives_each_worker_process_its_own_gpu(
    redis_server: RedisServer, worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **worker_env,
        "INFERQ_REDIS_URL": redis_server.url,
        "INFERQ_REGRESSION_QUEUE": "test-devices-gpus",
        "INFERQ_GPUS": "0,1",
    }
    argv = [sys.executable, "-m", "inferq", "worker", "--concurrency", "2"]
    # Only the children's environments are looked at: they are stopped before loading models.
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        sup = subprocess.Popen(argv, env=env, stderr=out, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(pinned := _pinned_children(sup.pid)) < 2:
            assert sup.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"children seen: {pinned}"
            time.sleep(0.02)  # polling /proc for the children; deadline-bounded
    finally:
        # The whole group: the supervisor may not have installed its forwarding handler yet.
        os.killpg(sup.pid, signal.SIGTERM)
        try:
            sup.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(sup.pid, signal.SIGKILL)
            sup.wait()
    assert pinned == {"0": "0", "1": "1"}


def _scaled_rows(regressor_path: Path, n: int, seed: int) -> tuple[list[dict[str, float]], Any]:
    cols = generate(n, seed)
    rows = [{f: float(cols[f][i]) for f in COURSE_FEATURES} for i in range(n)]
    meta = read_meta(regressor_path)
    raw = np.array([[r[f] for f in meta.features] for r in rows])
    return rows, meta.scale_features(raw).astype(np.float32)


def test_mixed_precision_regressor_agrees_with_float32(regressor_path: Path) -> None:
    meta = read_meta(regressor_path)
    _, x = _scaled_rows(regressor_path, 8, seed=21)
    dollars = []
    for mixed in (False, True):
        settings = Settings.load(
            {}, regressor_path=regressor_path, max_batch_size=8, mixed_precision=mixed
        )
        with served_regressor(settings) as served:  # XLA on, as served
            dollars.append(meta.to_dollars(served.forward.forward(x)))
            assert served.version == file_version(regressor_path)  # the file's, not the copy's
    np.testing.assert_allclose(dollars[1], dollars[0], rtol=1e-2)
    assert not np.array_equal(dollars[1], dollars[0])  # float16 ran: the served model is mixed


def _photos() -> np.ndarray:
    from inferq.core.images import lite0_preprocess

    images = [Image.open(io.BytesIO(photo(name))).convert("RGB") for name in PHOTOS]
    return np.stack([lite0_preprocess(img) for img in images])


def test_mixed_precision_classifier_keeps_top1_and_a_float32_softmax(models_dir: Path) -> None:
    from worker.loading.keras_files import load_keras

    model = load_keras(models_dir / "efficientnet_lite0.h5")
    mixed = devices.to_mixed_precision(model, "efficientnet_lite0")
    policies = {layer.name: layer.dtype_policy.name for layer in mixed.layers[1:]}
    assert policies.pop("probs") == "float32"
    assert set(policies.values()) == {"mixed_float16"}
    x = _photos()
    want, got = np.asarray(model(x)), np.asarray(mixed(x))
    assert got.dtype == np.float32
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()
    np.testing.assert_allclose(got, want, atol=5e-3)


def test_a_model_that_cannot_be_rebuilt_is_one_clear_error() -> None:
    import keras

    class Subclassed(keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x: Any) -> Any:
            return self.dense(x)

    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    x = keras.Input((3,))
    nested = keras.Model(x, keras.layers.Dense(1)(inner(x)))
    for model in (Subclassed(), nested):
        with pytest.raises(ModelFileError, match=r"INFERQ_MIXED_PRECISION: cannot rebuild m in"):
            devices.to_mixed_precision(model, "m")


@pytest.mark.e2e
def test_a_worker_pins_its_gpu_and_serves_in_mixed_precision(
    redis_server: RedisServer, worker_env: dict[str, str], regressor_path: Path
) -> None:
    queue = "test-devices-mixed"
    env = {
        **worker_env,
        "INFERQ_REGRESSION_QUEUE": queue,
        "INFERQ_GPUS": "1",
        "INFERQ_MIXED_PRECISION": "true",
    }
    rows, x = _scaled_rows(regressor_path, 4, seed=22)
    with WorkerProcess(redis_server.url, env=env) as proc:
        # One process: index 0, so the first (only) id; TensorFlow finds no GPU here.
        line = "devices=CPU-only cuda_visible_devices=1 precision=mixed_float16"
        assert line in proc.log_tail(100_000)
        with Client(Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})) as client:
            result = client.submit(rows).wait(60)
    from worker.loading.keras_files import load_keras

    want = read_meta(regressor_path).to_dollars(np.asarray(load_keras(regressor_path)(x)))
    np.testing.assert_allclose(result.earnings_usd, want.reshape(-1), rtol=1e-2)
    assert result.model.version == file_version(regressor_path)
