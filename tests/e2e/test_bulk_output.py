"""One bulk run per output, and an output that cannot be written refused before anything
is sent: two real `inferq score` runs on the same output, and a run as another user."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inferq.core import exit_codes
from inferq.core.settings import Settings
from inferq.ops.worker_process import WorkerProcess
from producer.bulk.output_lock import lock_path
from tests.support.bulk import products
from tests.support.harness import cli_env, run_inferq

pytestmark = pytest.mark.e2e


def _until(check: object, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)  # polling another process's effect, deadline-bounded


def _holding(proc: subprocess.Popen[str], output: Path) -> bool:
    """Whether ``proc`` holds ``output``'s lock (it writes its pid there once it does)."""
    assert proc.poll() is None, f"the first run ended: {proc.communicate()}"
    try:
        return lock_path(output).read_text().strip() == str(proc.pid)
    except FileNotFoundError:
        return False


def _stalled_run(settings: Settings, command: str, *args: str) -> subprocess.Popen[str]:
    """A run that holds its output and waits: no worker serves its queue."""
    env = cli_env(settings)
    env["INFERQ_REGRESSION_QUEUE"] = env["INFERQ_VISION_QUEUE"] = f"test-nobody-{os.getpid()}"
    argv = [sys.executable, "-m", "inferq", command, *args]
    return subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)


def test_a_second_run_on_the_same_output_stops_at_once_and_the_lock_dies_with_the_first(
    worker: WorkerProcess, settings: Settings, tmp_path: Path
) -> None:
    src, out = products(tmp_path / "in.csv", 300, bad=False), tmp_path / "out.csv"
    flags = ("--resume", "--chunk-rows", "64", "--chunk-timeout-s", "120")
    first = _stalled_run(settings, "score", str(src), "-o", str(out), *flags)
    try:
        _until(lambda: _holding(first, out), "the first run never took the lock")
        started = time.monotonic()
        second = run_inferq("score", str(src), "-o", str(out), *flags, env=cli_env(settings))
        assert second.returncode == exit_codes.USAGE, second.stderr
        line = second.stderr.strip()
        assert line == f"inferq: another inferq score (pid {first.pid}) is writing {out}"
        assert time.monotonic() - started < 30  # at once: a process start, no wait on Redis
        first.send_signal(signal.SIGKILL)  # killed: the kernel releases its lock
        first.wait(30)
    finally:
        first.kill()
        first.communicate()
    assert lock_path(out).exists()  # a stale file, which must not block the next run
    third = run_inferq("score", str(src), "-o", str(out), *flags, env=cli_env(settings))
    assert third.returncode == 0, third.stderr
    assert "ok=300" in third.stderr and not lock_path(out).exists()


def test_score_images_takes_the_same_lock(
    worker: WorkerProcess, settings: Settings, tmp_path: Path
) -> None:
    photos, out = tmp_path / "photos", tmp_path / "labels.jsonl"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"not read before the lock")
    flags = ("-o", str(out), "--timeout-s", "120")
    first = _stalled_run(settings, "score-images", str(photos), *flags)
    try:
        _until(lambda: _holding(first, out), "the first run never took the lock")
        second = run_inferq("score-images", str(photos), "-o", str(out), env=cli_env(settings))
    finally:
        first.kill()
        first.communicate()
    assert second.returncode == exit_codes.USAGE, second.stderr
    assert f"another inferq score-images (pid {first.pid}) is writing {out}" in second.stderr


# Root without the capability to override file permissions: as a container's user who
# does not own the mounted folder. (Another uid cannot run this interpreter: it lives
# under /root.)
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
OTHER_UID = 1000


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="drops root's override of file permissions: needs root and setpriv",
)
def test_an_output_folder_the_user_cannot_write_is_a_usage_error_naming_the_uid(
    tmp_path: Path,
) -> None:
    src = products(tmp_path / "in.csv", 20, bad=False)
    data = tmp_path / "data"  # as ./data owned by another uid than the container's user
    data.mkdir(mode=0o755)
    os.chown(data, OTHER_UID, OTHER_UID)
    assert stat.S_IMODE(data.stat().st_mode) == 0o755
    # Nothing is sent: no Redis listens on this URL, and the refusal comes first.
    env = {**os.environ, "INFERQ_REDIS_URL": "redis://127.0.0.1:1/0"}
    for command, source in (("score", src), ("score-images", tmp_path)):
        argv = [*UNPRIVILEGED, sys.executable, "-m", "inferq", command, str(source)]
        argv += ["-o", str(data / "out")]
        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == exit_codes.USAGE, proc.stderr
        [line] = proc.stderr.strip().splitlines()
        uid = os.geteuid()
        assert line == (
            f"inferq: cannot write in {data} (owned by uid {OTHER_UID}, mode 755); this "
            f"command runs as uid {uid}: make it writable for uid {uid} (e.g. chown {uid} "
            f"{data}), run as its owner, or choose another -o"
        )
    assert list(data.iterdir()) == []


def test_an_output_in_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    src = products(tmp_path / "in.csv", 20, bad=False)
    env = {**os.environ, "INFERQ_REDIS_URL": "redis://127.0.0.1:1/0"}
    proc = run_inferq("score", str(src), "-o", str(tmp_path / "no" / "out.csv"), env=env)
    assert proc.returncode == exit_codes.USAGE, proc.stderr
    assert proc.stderr.strip() == (
        f"inferq: the output's folder {tmp_path / 'no'} does not exist: "
        "create it, or choose another -o"
    )
