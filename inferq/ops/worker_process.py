"""A real worker as a subprocess, with a ready-file handshake: what the demo, the
benchmarks and the tests start and stop.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from inferq.core.processes import Managed, stop_process


class WorkerStartError(RuntimeError):
    """A worker process exited or stayed silent before it was ready."""


class WorkerProcess(Managed):
    """A worker subprocess: ``python -m inferq worker`` by default, or ``argv`` (such as
    inferq.ops.worker_command.celery_command's)."""

    def __init__(
        self,
        redis_url: str,
        queues: Sequence[str] = ("regression",),
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        log_path: Path | None = None,
        argv: Sequence[str] | None = None,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="inferq-worker-")
        self.ready_file = Path(self._tmp.name) / "ready"
        self.log_path = log_path or Path(self._tmp.name) / "worker.log"
        self.env = {
            **os.environ,
            "INFERQ_REDIS_URL": redis_url,
            "INFERQ_READY_FILE": str(self.ready_file),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        default = [sys.executable, "-m", "inferq", "worker", "--queues", ",".join(queues), *args]
        self.argv = list(argv) if argv is not None else default
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while not self.ready_file.exists():
            if self.process.poll() is not None:
                raise WorkerStartError(
                    f"worker exited {self.process.returncode}: {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise WorkerStartError(f"worker not ready in {timeout_s} s: {self.log_tail()}")
            time.sleep(0.05)  # polling a file the worker writes when ready; deadline-bounded

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 30.0, sig: int = signal.SIGTERM) -> int:
        """Signal the worker (warm shutdown by default) and wait; kill it past the timeout."""
        if self.process is None:
            return 0
        return stop_process(self.process, timeout_s, sig, whole_group=True)

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()
