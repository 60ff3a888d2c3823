"""A model roll-out during a nightly run, on real workers: the output holds one model.

`inferq score` runs on worker v1; v1 is stopped and v2 (another model file) takes the
queue mid-run. v2 refuses chunks made for v1 (model_version_mismatch), and the run
starts over on v2 (the default) or stops naming both versions (--on-new-model fail).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from inferq.bench.soak_cluster import second_model as make_second_model
from inferq.core.modelfile import file_version
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess
from tests.support.bulk import products
from tests.support.harness import cli_env

pytestmark = pytest.mark.e2e

QUEUE = "test-rollout"
FLAGS = ("--chunk-rows", "50", "--in-flight", "1")


@pytest.fixture(scope="module")
def second_model(regressor_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same network with another target scaler: another file, version and dollars."""
    return make_second_model(regressor_path, tmp_path_factory.mktemp("v2"))


def _rollout(
    redis_server: RedisServer,
    env: dict[str, str],
    second: Path,
    src: Path,
    out: Path,
    *extra: str,
) -> subprocess.CompletedProcess[str]:
    """Run `inferq score` on worker v1, then swap v1 for v2 once some parts exist."""
    settings = Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})
    argv = [sys.executable, "-m", "inferq", "score", str(src), "-o", str(out), *FLAGS, *extra]
    parts = out.with_name(out.name + ".inferq-parts")
    with WorkerProcess(redis_server.url, env=env) as v1:
        proc = subprocess.Popen(argv, env=cli_env(settings), stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: len(list(parts.glob("*.part"))) >= 4, proc)
        assert v1.stop() == 0
    with WorkerProcess(redis_server.url, env={**env, "INFERQ_REGRESSOR_PATH": str(second)}):
        _, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(argv, proc.returncode, "", stderr)


def _wait_for(
    done: Callable[[], bool], proc: subprocess.Popen[str], timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert proc.poll() is None, "the run ended before the roll-out"
        assert time.monotonic() < deadline, "no parts appeared"
        time.sleep(0.02)  # polling the file system for the run's progress, deadline-bounded


@dataclass
class Rollout:
    """One products file and the two model versions, ready for a run to roll out under."""

    redis_server: RedisServer
    env: dict[str, str]
    second: Path
    src: Path
    out: Path
    versions: tuple[str, str]

    def run(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return _rollout(self.redis_server, self.env, self.second, self.src, self.out, *extra)


@pytest.fixture()
def rollout(
    redis_server: RedisServer,
    worker_env: dict[str, str],
    regressor_path: Path,
    second_model: Path,
    tmp_path: Path,
) -> Rollout:
    src = products(tmp_path / "in.csv", 1500, bad=False)
    versions = (file_version(regressor_path), file_version(second_model))
    env = {**worker_env, "INFERQ_REGRESSION_QUEUE": QUEUE}
    return Rollout(redis_server, env, second_model, src, tmp_path / "out.csv", versions)


def test_a_rollout_mid_run_gives_an_output_of_the_new_model_only(
    rollout: Rollout, tmp_path: Path
) -> None:
    result = rollout.run()
    assert result.returncode == 0, result.stderr
    v1, v2 = rollout.versions
    assert f"the model changed under the run ({v1} -> {v2})" in result.stderr
    local = tmp_path / "local.csv"
    in_process = subprocess.run(
        [
            sys.executable,
            "-m",
            "inferq",
            "score",
            str(rollout.src),
            "-o",
            str(local),
            "--in-process",
        ],
        env={**cli_env(Settings.load(rollout.env)), "INFERQ_REGRESSOR_PATH": str(rollout.second)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert in_process.returncode == 0, in_process.stderr
    got = pacsv.read_csv(rollout.out).column("earnings_usd").to_pylist()
    want = pacsv.read_csv(local).column("earnings_usd").to_pylist()
    assert len(got) == 1500
    # v2's dollars are 1.5 x v1's: a row of v1 would be 33% off, not a rounding error.
    assert max(abs(g - w) / w for g, w in zip(got, want, strict=True)) < 1e-4


def test_with_fail_a_rollout_stops_the_run_naming_both_models(rollout: Rollout) -> None:
    result = rollout.run("--on-new-model", "fail")
    assert result.returncode == 3, result.stderr
    v1, v2 = rollout.versions
    assert f"expects model version {v1}; this worker serves {v2}" in result.stderr
    assert not rollout.out.exists()
