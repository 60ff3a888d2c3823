"""Shared fixtures: a real redis-server, a trained regressor, the Lite0 classifier, and
real worker processes for each (regression and vision), with clients.

Everything is started once per session on free ports with private queues, and
stopped at the end; nothing here sleeps to wait (readiness is polled with
deadlines by RedisServer and WorkerProcess).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A developer's own INFERQ_* settings must not leak into the suite.
for _key in [k for k in os.environ if k.startswith("INFERQ_")]:
    del os.environ[_key]

from inferq.core.settings import Settings  # noqa: E402
from inferq.ops.redis_server import RedisServer  # noqa: E402
from inferq.ops.worker_process import WorkerProcess  # noqa: E402
from inferq.tools.sample_data import write_csv  # noqa: E402
from producer import Client  # noqa: E402
from tests.support import photos, redis_clients  # noqa: E402
from tests.support.harness import (  # noqa: E402
    E2E_MAX_BATCH,
    E2E_MAX_WAIT_MS,
    E2E_QUEUE,
    VISION_QUEUE,
)


@pytest.fixture(autouse=True)
def _close_redis_clients() -> Iterator[None]:
    """Every client the test opened with tests.support.redis_clients, closed after it."""
    yield
    redis_clients.close_all()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    write_csv(d / "train.csv", 1000, seed=0)
    write_csv(d / "test.csv", 300, seed=1)
    return d


@pytest.fixture(scope="session")
def regressor_path(data_dir: Path) -> Path:
    from inferq.tools.training import train

    out = data_dir / "regressor.h5"
    train(data_dir / "train.csv", "total_earnings", out, epochs=30, seed=0)
    return out


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding the real Lite0 classifier, built offline once."""
    from inferq.tools.lite0.convert import build_lite0_model

    d = tmp_path_factory.mktemp("models")
    build_lite0_model(d / "efficientnet_lite0.h5")
    return d


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def worker_env(regressor_path: Path) -> dict[str, str]:
    return {
        "INFERQ_REGRESSOR_PATH": str(regressor_path),
        "INFERQ_REGRESSION_QUEUE": E2E_QUEUE,
        "INFERQ_MAX_WAIT_MS": str(E2E_MAX_WAIT_MS),
        "INFERQ_MAX_BATCH_SIZE": str(E2E_MAX_BATCH),
        "INFERQ_MAX_ROWS_PER_JOB": "100",
    }


@pytest.fixture(scope="session")
def worker(
    redis_server: RedisServer, worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with WorkerProcess(redis_server.url, env=worker_env, log_path=log) as proc:
        yield proc


@pytest.fixture(scope="session")
def settings(redis_server: RedisServer, worker_env: dict[str, str]) -> Settings:
    env = {**worker_env, "INFERQ_REDIS_URL": redis_server.url}
    return Settings.load(env)


@pytest.fixture()
def client(worker: WorkerProcess, settings: Settings) -> Iterator[Client]:
    with Client(settings) as c:
        yield c


@pytest.fixture(scope="session")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("images")
    root = base / "root"
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "chelsea.jpg").write_bytes(photos.photo("chelsea"))
    (base / "secret.jpg").write_bytes(photos.photo("coffee"))
    (root / "escape.jpg").symlink_to(base / "secret.jpg")
    return root


@pytest.fixture(scope="session")
def vision_env(models_dir: Path, image_root: Path) -> dict[str, str]:
    return {
        "INFERQ_MODELS_DIR": str(models_dir),
        "INFERQ_VISION_QUEUE": VISION_QUEUE,
        "INFERQ_VISION_MAX_BATCH_SIZE": "8",
        "INFERQ_VISION_MAX_WAIT_MS": "100",
        "INFERQ_IMAGE_ROOT": str(image_root),
        "INFERQ_MAX_IMAGE_BYTES": str(2_000_000),
        "INFERQ_MAX_IMAGE_PIXELS": str(5_000_000),
    }


@pytest.fixture(scope="session")
def vision_settings(redis_server: RedisServer, vision_env: dict[str, str]) -> Settings:
    return Settings.load({**vision_env, "INFERQ_REDIS_URL": redis_server.url})


@pytest.fixture(scope="session")
def vision_worker(redis_server: RedisServer, vision_env: dict[str, str]) -> Iterator[WorkerProcess]:
    with WorkerProcess(redis_server.url, ("vision",), env=vision_env) as proc:
        yield proc


@pytest.fixture()
def vclient(vision_worker: WorkerProcess, vision_settings: Settings) -> Iterator[Client]:
    with Client(vision_settings) as c:
        yield c
