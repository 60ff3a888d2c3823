"""Starting worker processes: the `inferq worker` command and the handles that
demo, benchmarks and tests use to run real workers as subprocesses.
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
from types import FrameType

from inferq.constants import QUEUE_MODELS
from inferq.procutil import Managed, stop_process
from inferq.settings import Settings

# Mingle and gossip make every start wait a second for neighbours; task events
# and heartbeats (what Flower and `inspect` use) stay on.
CELERY_FLAGS = ("--without-mingle", "--without-gossip")


class WorkerStartError(RuntimeError):
    """A worker process exited or stayed silent before it was ready."""


def queue_names(logical: Sequence[str], settings: Settings) -> list[str]:
    """Logical queue names (`regression`) to the configured Redis queue names."""
    configured = {"regression": settings.regression_queue, "vision": settings.vision_queue}
    unknown = [q for q in logical if q not in QUEUE_MODELS]
    if unknown:
        raise ValueError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUE_MODELS)}")
    return [configured[q] for q in logical]


def celery_argv(queues: Sequence[str], nodename: str, loglevel: str) -> list[str]:
    return ["worker", "-Q", ",".join(queues), "-n", nodename, "-l", loglevel, *CELERY_FLAGS]


def default_nodename(queues: Sequence[str], index: int | None = None) -> str:
    # The pid keeps several workers on one host distinct (no duplicate-nodename warnings).
    suffix = f"-{index}" if index is not None else ""
    return f"inferq-{'+'.join(queues)}{suffix}-{os.getpid()}@%h"


def gpu_env(gpus: Sequence[int] | None, index: int) -> dict[str, str]:
    """The CUDA_VISIBLE_DEVICES that pins worker process ``index`` to its GPU (round robin).

    Empty without INFERQ_GPUS, so an operator's own CUDA_VISIBLE_DEVICES stays in force.
    """
    if not gpus:
        return {}
    return {"CUDA_VISIBLE_DEVICES": str(gpus[index % len(gpus)])}


def supervise(argvs: Sequence[Sequence[str]], gpus: Sequence[int] | None = None) -> int:
    """Run one `celery worker` process per argv; forward SIGTERM/SIGINT; worst exit code wins.

    A child still starting when the signal comes dies of it (Celery's handler is not
    installed yet): that is the stop that was asked for, not a failure. Each child gets
    its index (INFERQ_PROCESS_INDEX, 0..N-1), so its metrics port is its own, and with
    ``gpus`` its own GPU: in its environment from exec, before CUDA can read it.
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", *a],
            env={**os.environ, "INFERQ_PROCESS_INDEX": str(index), **gpu_env(gpus, index)},
        )
        for index, a in enumerate(argvs)
    ]
    forwarded: set[int] = set()

    def forward(signum: int, _frame: FrameType | None) -> None:
        forwarded.add(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [p.wait() for p in procs]
    codes = [0 if code < 0 and -code in forwarded else code for code in codes]
    return max(codes, key=abs)


class WorkerProcess(Managed):
    """A real worker subprocess (``python -m inferq worker``) with a ready-file handshake."""

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
