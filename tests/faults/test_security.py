"""Redis with credentials: a password (requirepass) and an ACL user.

With the credentials in INFERQ_REDIS_URL the worker serves, and the password shows
up in neither its log nor anything it stores in Redis; without them (or with wrong
ones) it stops at start with one line saying that authentication failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferq.core.constants import COURSE_FEATURES
from inferq.core.settings import Settings
from inferq.errors import InvalidInput
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_command import celery_command
from inferq.ops.worker_process import WorkerProcess
from inferq.tools.sample_data import generate
from producer import Client
from tests.support.redis_clients import redis_client

pytestmark = pytest.mark.e2e

PASSWORD = "Tr0ub4dor-inferq-test"  # distinctive: searched for in logs and stored values
USER = "inferq-worker"
ACL_RULES = "~* &* +@all -@dangerous"  # the rules docs/security.md recommends
EXIT_BROKER = 4


@pytest.fixture(scope="module")
def password_redis() -> Iterator[RedisServer]:
    with RedisServer(password=PASSWORD) as server:
        yield server


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[RedisServer]:
    """Only the ACL user gets in (the default user is off), and it may not run the commands
    Redis calls dangerous (FLUSHALL, KEYS, CONFIG, DEBUG, ...): the worker needs none."""
    with RedisServer(username=USER, password=PASSWORD, acl_rules=ACL_RULES) as server:
        yield server


def _row() -> dict[str, float]:
    cols = generate(1, 21)
    return {f: float(cols[f][0]) for f in COURSE_FEATURES}


def _stored_text(url: str) -> str:
    """Every key and value in the server, as text (results, queues, bindings)."""
    client = redis_client(url)
    parts = []
    for key in client.scan_iter():
        kind = client.type(key).decode()
        value: object = {
            "string": client.get,
            "list": lambda k: client.lrange(k, 0, -1),
            "set": client.smembers,
            "zset": lambda k: client.zrange(k, 0, -1),
            "hash": client.hgetall,
        }[kind](key)
        parts.append(f"{key!r} {value!r}")
    client.close()
    return "\n".join(parts)


@pytest.mark.parametrize("server", ["password_redis", "acl_redis"])
def test_the_worker_serves_with_the_credentials_in_its_url_and_leaks_them_nowhere(
    server: str, request: pytest.FixtureRequest, worker_env: dict[str, str], tmp_path: Path
) -> None:
    srv: RedisServer = request.getfixturevalue(server)
    env = {**worker_env, "INFERQ_REGRESSION_QUEUE": f"test-secure-{server}"}
    settings = Settings.load({**env, "INFERQ_REDIS_URL": srv.url})
    assert PASSWORD in srv.url
    with WorkerProcess(srv.url, env=env, log_path=tmp_path / "worker.log") as proc:
        with Client(settings) as client:
            assert client.predict(_row(), timeout_s=60).earnings_usd[0] > 0
            with pytest.raises(InvalidInput):
                client.predict({**_row(), "unit_price": "free"}, timeout_s=60)
            unknown = client.app.send_task("inferq.nope", queue=settings.regression_queue)
            unknown.get(timeout=60, propagate=False)
        log = proc.log_tail(10_000_000)
    assert "ready: node=" in log
    assert PASSWORD not in log
    assert ":**@127.0.0.1" in log  # Celery names the broker with the password masked
    stored = _stored_text(srv.url)
    assert "celery-task-meta-" in stored and PASSWORD not in stored


def _worker(argv: list[str], url: str, regressor_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "INFERQ_REDIS_URL": url,
        "INFERQ_REGRESSOR_PATH": str(regressor_path),
        "INFERQ_REGRESSION_QUEUE": "test-secure-refused",
    }
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240, check=False)


INFERQ = [sys.executable, "-m", "inferq", "worker"]
CELERY = celery_command(["test-secure-refused"], "secure-refused@%h", "INFO")


@pytest.mark.parametrize(
    ("server", "credentials", "argv"),
    [
        ("password_redis", "", INFERQ),
        ("password_redis", ":wrong-pw@", INFERQ),
        ("acl_redis", f":{PASSWORD}@", INFERQ),  # the default user is off
        ("acl_redis", f"{USER}:wrong-pw@", INFERQ),
        ("acl_redis", f"intruder:{PASSWORD}@", INFERQ),
        ("acl_redis", "", CELERY),  # the plain Celery command does not retry forever either
    ],
    ids=[
        "no-password",
        "wrong-password",
        "no-user",
        "wrong-user-password",
        "unknown-user",
        "celery",
    ],
)
def test_missing_or_wrong_credentials_stop_the_worker_with_one_line(
    server: str,
    credentials: str,
    argv: list[str],
    request: pytest.FixtureRequest,
    regressor_path: Path,
) -> None:
    srv: RedisServer = request.getfixturevalue(server)
    url = f"redis://{credentials}127.0.0.1:{srv.port}/0"
    proc = _worker(argv, url, regressor_path)
    assert proc.returncode == EXIT_BROKER, proc.stderr[-3000:]
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("inferq: ")]
    assert "authentication failed" in line, line
    assert f"127.0.0.1:{srv.port}" in line
    assert "Traceback" not in proc.stderr
    for secret in (PASSWORD, "wrong-pw"):
        assert secret not in proc.stderr + proc.stdout
