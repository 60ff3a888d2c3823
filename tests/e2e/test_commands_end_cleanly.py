"""Commands end as documented: SIGTERM stops what they started, a bulk run's failures are
one line and a documented exit code, and a command with no worker on its queue says
so, keeps waiting, and finishes once a worker comes (scaling from zero)."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inferq.core import exit_codes
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer, free_port
from inferq.ops.worker_process import WorkerProcess
from tests.support.bulk import products
from tests.support.delivery import rows
from tests.support.harness import cli_env, run_inferq

pytestmark = pytest.mark.e2e


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _until(check: object, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)  # polling a process's effect, deadline-bounded


def test_sigterm_stops_inferq_redis_and_its_server() -> None:
    port = free_port()
    argv = [sys.executable, "-m", "inferq", "redis", "--port", str(port)]
    # As a script's background job: SIGINT ignored, so only SIGTERM can reach it.
    ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, preexec_fn=ignore_sigint)  # noqa: PLW1509
    try:
        _until(lambda: _listening(port), "inferq redis never listened")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        _until(lambda: not _listening(port), "its redis-server outlived the command")
    finally:
        proc.kill()


def test_inferq_redis_on_a_taken_port_says_so(redis_server: RedisServer) -> None:
    # The other server would answer the new one's PING: it must not pass for started.
    proc = run_inferq("redis", "--port", str(redis_server.port), timeout_s=60)
    assert proc.returncode == exit_codes.USAGE, proc.stderr
    assert f"127.0.0.1:{redis_server.port} is taken by another process" in proc.stderr
    assert "Traceback" not in proc.stderr and "INFERQ_REDIS_URL" not in proc.stdout


def test_sigterm_interrupts_a_bulk_run_that_resumes(
    worker: WorkerProcess, settings: Settings, tmp_path: Path
) -> None:
    src = products(tmp_path / "in.csv", 3000, bad=False)
    out = tmp_path / "out.csv"
    flags = ("--chunk-rows", "50", "--in-flight", "1")
    argv = [sys.executable, "-m", "inferq", "score", str(src), "-o", str(out), *flags]
    proc = subprocess.Popen(argv, env=cli_env(settings), stderr=subprocess.PIPE, text=True)
    parts = tmp_path / "out.csv.inferq-parts"
    _until(lambda: len(list(parts.glob("*.part"))) >= 3, "no parts appeared", 120)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == exit_codes.INTERRUPTED, stderr
    assert "interrupted; finished chunks are kept: rerun with --resume" in stderr
    assert "Traceback" not in stderr
    resumed = run_inferq(
        "score", str(src), "-o", str(out), *flags, "--resume", env=cli_env(settings)
    )
    assert resumed.returncode == 0 and "ok=3000" in resumed.stderr


def test_bulk_failures_are_one_line_and_a_documented_code(
    worker: WorkerProcess, settings: Settings, tmp_path: Path
) -> None:
    bad_utf8 = tmp_path / "bad.csv"
    products(bad_utf8, 20, bad=False)
    bad_utf8.write_bytes(bad_utf8.read_bytes().replace(b'"g7"', b'"g\xff\xfe"'))
    broken_parquet = tmp_path / "broken.parquet"
    pq.write_table(pa.table({"a": list(range(1000))}), broken_parquet)
    broken_parquet.write_bytes(broken_parquet.read_bytes()[:-300])
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("the output's folder is a file")
    cases = [
        (bad_utf8, tmp_path / "o1.csv", exit_codes.USAGE),
        (broken_parquet, tmp_path / "o2.parquet", exit_codes.USAGE),
        (products(tmp_path / "ok.csv", 20, bad=False), not_a_dir / "o.csv", exit_codes.USAGE),
    ]
    for src, out, code in cases:  # src, out, the exit code
        proc = run_inferq("score", str(src), "-o", str(out), env=cli_env(settings))
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode == code, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("inferq: "), proc.stderr


def test_a_command_says_no_worker_serves_its_queue_and_waits_for_one(
    redis_server: RedisServer, worker_env: dict[str, str]
) -> None:
    env = {**worker_env, "INFERQ_REGRESSION_QUEUE": f"test-nobody-{os.getpid()}"}
    settings = Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})
    argv = [sys.executable, "-m", "inferq", "predict", "--json", json.dumps(rows(1)[0])]
    proc = subprocess.Popen(
        argv, env=cli_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    started = time.monotonic()
    line = proc.stderr.readline()  # blocks until the command says something
    assert f"no worker serves queue {env['INFERQ_REGRESSION_QUEUE']} yet" in line
    assert "inferq worker --queues regression" in line and time.monotonic() - started < 15
    with WorkerProcess(redis_server.url, env=env):  # a worker comes: the command finishes
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[0])["earnings_usd"] > 0


def _read_into(stream: IO[str] | None, lines: queue.Queue[str]) -> None:
    assert stream is not None
    for line in stream:
        lines.put(line)


def _lines_until(lines: queue.Queue[str], wanted: str, timeout_s: float) -> list[str]:
    """stderr lines read until one holds ``wanted``; fails past the deadline."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while not seen or wanted not in seen[-1]:
        left_s = deadline - time.monotonic()
        assert left_s > 0, f"{wanted!r} not said within {timeout_s} s: {seen}"
        try:
            seen.append(lines.get(timeout=left_s))
        except queue.Empty:
            continue
    return seen


def test_a_bulk_run_says_so_while_its_only_worker_is_stopped_and_when_one_serves_again(
    redis_server: RedisServer, worker_env: dict[str, str], tmp_path: Path
) -> None:
    name = f"test-paused-{os.getpid()}"
    env = {**worker_env, "INFERQ_REGRESSION_QUEUE": name}
    settings = Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})
    # Enough 50-row chunks one at a time that the run still goes on well after the
    # worker comes back (the watcher looks every 2 s while none serves): 20,000 rows
    # once finished within that look, and the run ended before it could say so.
    src, out = products(tmp_path / "in.csv", 100_000, bad=False), tmp_path / "out.csv"
    argv = [sys.executable, "-m", "inferq", "score", str(src), "-o", str(out)]
    argv += ["--chunk-rows", "50", "--in-flight", "1"]
    with WorkerProcess(redis_server.url, env=env) as worker:
        proc = subprocess.Popen(argv, env=cli_env(settings), stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=_read_into, args=(proc.stderr, lines), daemon=True)
        reader.start()
        try:
            said = _stop_and_resume(worker, lines, name, tmp_path / "out.csv.inferq-parts")
            assert proc.wait(180) == 0, said
        finally:
            proc.kill()
            reader.join(30)
            assert proc.stderr is not None
            proc.stderr.close()
            proc.wait()
    assert not any("Traceback" in line for line in said)


def _stop_and_resume(
    worker: WorkerProcess, lines: queue.Queue[str], name: str, parts: Path
) -> list[str]:
    """Stop the only worker mid-run (SIGSTOP) until the run has said so twice, then let it
    go on until the run says a worker serves again; what the run said."""
    _until(lambda: len(list(parts.glob("*.part"))) >= 3, "no parts appeared", 120)
    os.killpg(worker.pid, signal.SIGSTOP)
    try:
        # "any more", or "yet" if the watcher's first look came after the stop
        said = _lines_until(lines, f"no worker serves queue {name} ", 60)
        said += _lines_until(lines, f"still no worker serves queue {name}", 60)
    finally:
        os.killpg(worker.pid, signal.SIGCONT)
    return said + _lines_until(lines, f"serves queue {name} again", 60)
