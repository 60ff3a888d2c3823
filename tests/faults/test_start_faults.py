"""Faults at start and in the queue.

A worker whose model file is missing, truncated or of the wrong shape exits at start,
non-zero, with one clear line per process, and nothing restarts it in a loop
(tests/e2e/test_predict.py covers a missing, truncated or non-model regressor file). A job
whose deadline passed while it was queued is never run; its caller gets `expired`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from inferq.core.constants import COURSE_FEATURES
from inferq.core.contract import PredictResult
from inferq.core.modelfile import read_meta, write_meta
from inferq.core.settings import Settings
from inferq.errors import JobExpired
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_command import celery_command
from inferq.ops.worker_process import WorkerProcess
from inferq.tools.sample_data import generate
from producer import Client

pytestmark = pytest.mark.e2e

EXIT_MODEL = 3


def _save(model: Any, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keras calls HDF5 "legacy"
        model.save(path)
    return path


@pytest.fixture(scope="module")
def wrong_shape_regressor(regressor_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A network of 5 inputs in a file whose metadata names the 9 course features."""
    import keras

    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    path = _save(model, tmp_path_factory.mktemp("faults") / "regressor.h5")
    write_meta(path, read_meta(regressor_path))
    return path


@pytest.fixture(scope="module")
def wrong_shape_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image model of 10 outputs, served with the 1000 ImageNet labels."""
    import keras

    model = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    return _save(model, tmp_path_factory.mktemp("faults") / "ten.h5")


def _start(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=240, check=False
    )


def _inferq_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("inferq: ")]


INFERQ = [sys.executable, "-m", "inferq", "worker"]
CELERY = celery_command(["test-faults"], "start-faults@%h", "INFO")


@pytest.mark.parametrize(
    ("argv", "processes"),
    [
        (INFERQ, 1),
        ([*INFERQ, "--concurrency", "2"], 2),
        (CELERY, 1),
    ],
    ids=["inferq", "inferq-concurrency-2", "celery"],
)
def test_a_regressor_of_the_wrong_shape_stops_the_worker(
    redis_server: RedisServer, wrong_shape_regressor: Path, argv: list[str], processes: int
) -> None:
    env = {
        "INFERQ_REDIS_URL": redis_server.url,
        "INFERQ_REGRESSOR_PATH": str(wrong_shape_regressor),
        "INFERQ_REGRESSION_QUEUE": "test-faults",
    }
    proc = _start(argv, env)
    assert proc.returncode == EXIT_MODEL, proc.stderr[-3000:]
    lines = _inferq_lines(proc)
    # One line per process, each tried once: nothing was restarted.
    assert len(lines) == processes, proc.stderr[-3000:]
    assert all(f"{wrong_shape_regressor} maps (None, 5) -> (None, 1)" in ln for ln in lines)
    assert "9 features -> 1 output is needed" in lines[0]
    assert "Traceback" not in proc.stderr
    assert "model loaded" not in proc.stderr


@pytest.mark.parametrize("damage", ["missing", "truncated", "wrong_shape"])
def test_a_bad_classifier_file_stops_the_worker(
    redis_server: RedisServer,
    models_dir: Path,
    wrong_shape_classifier: Path,
    tmp_path: Path,
    damage: str,
) -> None:
    env = {"INFERQ_REDIS_URL": redis_server.url, "INFERQ_VISION_QUEUE": "test-faults-vision"}
    if damage == "wrong_shape":
        model = wrong_shape_classifier
        env |= {"INFERQ_CLASSIFIER": str(model), "INFERQ_CLASSIFIER_PREPROCESS": "none"}
    else:
        model = tmp_path / "efficientnet_lite0.h5"
        if damage == "truncated":
            model.write_bytes((models_dir / model.name).read_bytes()[:100_000])
        env["INFERQ_MODELS_DIR"] = str(tmp_path)
    proc = _start([*INFERQ, "--queues", "vision"], env)
    assert proc.returncode == EXIT_MODEL, proc.stderr[-3000:]
    [line] = _inferq_lines(proc)
    assert str(model) in line, line
    if damage == "wrong_shape":
        assert "(None, 10)" in line and "1000 scores (one per label)" in line
    assert "Traceback" not in proc.stderr


def test_a_job_whose_deadline_passed_in_the_queue_is_not_run(
    redis_server: RedisServer, worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**worker_env, "INFERQ_REGRESSION_QUEUE": "test-expiry"}
    settings = Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})
    cols = generate(2, 13)
    row, other = ({f: float(cols[f][i]) for f in COURSE_FEATURES} for i in range(2))
    with Client(settings) as client:
        # Nothing consumes the queue yet; the worker started below needs seconds (TensorFlow,
        # the model) before it takes a message, far longer than these deadlines.
        late = client.submit(row, expires_s=0.5)
        late_too = client.submit(row, expires_s=0.5)
        in_time = client.submit(other, expires_s=600)
        with WorkerProcess(redis_server.url, env=env, log_path=tmp_path / "w.log") as proc:
            # as_completed before any wait(): Celery 5.7's iter_native misses a result whose
            # message an earlier wait() happened to read, and waits out its timeout.
            outcomes = {h.id: o for h, o in client.as_completed([late_too, in_time], 60)}
            with pytest.raises(JobExpired) as info:
                late.wait(60)
            log = proc.log_tail(1_000_000)
    assert info.value.info["code"] == "expired"
    assert isinstance(outcomes[late_too.id], JobExpired)
    assert isinstance(outcomes[in_time.id], PredictResult)
    assert f"job={in_time.id}" in log
    for handle in (late, late_too):
        assert f"job={handle.id}" not in log  # the job body never ran
