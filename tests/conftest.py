"""Shared fixtures: a real redis-server, a trained regressor, a real worker process.

Everything is started once per session on free ports with private queues, and
stopped at the end; nothing here sleeps to wait (readiness is polled with
deadlines by RedisServer and WorkerProcess).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A developer's own INFERQ_* settings must not leak into the suite.
for _key in [k for k in os.environ if k.startswith("INFERQ_")]:
    del os.environ[_key]

from inferq.launch import WorkerProcess  # noqa: E402
from inferq.redis_server import RedisServer  # noqa: E402
from inferq.sample_data import write_csv  # noqa: E402
from inferq.settings import Settings  # noqa: E402
from producer import Client  # noqa: E402

E2E_QUEUE = "test-regression"
E2E_MAX_WAIT_MS = 50.0
E2E_MAX_BATCH = 16


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    write_csv(d / "train.csv", 1000, seed=0)
    write_csv(d / "test.csv", 300, seed=1)
    return d


@pytest.fixture(scope="session")
def regressor_path(data_dir: Path) -> Path:
    from inferq.training import train

    out = data_dir / "regressor.h5"
    train(data_dir / "train.csv", "total_earnings", out, epochs=30, seed=0)
    return out


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding the real Lite0 classifier, built offline once."""
    from inferq.vision.build import build_lite0_model

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


def cli_env(settings: Settings) -> dict[str, str]:
    """Environment for a CLI subprocess talking to the session's worker."""
    return {
        **os.environ,
        "INFERQ_REDIS_URL": settings.broker_url,
        "INFERQ_REGRESSION_QUEUE": settings.regression_queue,
        "INFERQ_REGRESSOR_PATH": str(settings.regressor_path),
    }


def run_inferq(
    *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m inferq ARGS` as a user would run it; the caller checks the exit code."""
    return subprocess.run(
        [sys.executable, "-m", "inferq", *args],
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
