"""What `inferq bench soak` runs and breaks: one Redis with AOF, a regression worker, a
vision worker, and two versions of the regressor for a roll-out.

Every fault the soak injects is a method here; each leaves the cluster serving again
(a fresh worker after a kill, Redis back after a restart or a stall), so the traffic
goes on and every job must still be answered.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import redis

from inferq.core.kombu_keys import UNACKED_KEY
from inferq.core.modelfile import file_version, read_meta, write_meta
from inferq.core.scaling import MinMax
from inferq.core.settings import Settings
from inferq.ops import dead_letters
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess

REGRESSION_QUEUE, VISION_QUEUE = "soak-regression", "soak-vision"


def second_model(first: Path, directory: Path) -> Path:
    """The regressor with another target scaler: another file, version and dollars."""
    path = directory / "regressor-v2.h5"
    shutil.copyfile(first, path)
    meta = read_meta(path)
    scaler = MinMax(
        min=meta.target_scaler.min, scale=tuple(s / 1.5 for s in meta.target_scaler.scale)
    )
    write_meta(path, meta.model_copy(update={"target_scaler": scaler}))
    return path


class Cluster:
    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.workdir = workdir
        self.models = [settings.regressor_path.resolve()]
        self.models.append(second_model(self.models[0], workdir))
        self.versions = [file_version(m) for m in self.models]
        self.serving = 0  # index into models: the version the regression worker serves
        self.redis = RedisServer(appendonly=True, data_dir=workdir / "redis")
        self.env = {
            "INFERQ_REGRESSION_QUEUE": REGRESSION_QUEUE,
            "INFERQ_VISION_QUEUE": VISION_QUEUE,
            "INFERQ_MODELS_DIR": str(settings.models_dir.resolve()),
            "INFERQ_VISIBILITY_TIMEOUT_S": "10",
            "INFERQ_JOB_SLOTS": "64",
        }
        self.logs: list[Path] = []
        self.regression: WorkerProcess | None = None
        self.vision: WorkerProcess | None = None

    @property
    def url(self) -> str:
        return self.redis.url

    def start(self) -> Cluster:
        (self.workdir / "redis").mkdir(exist_ok=True)
        self.redis.start()
        self.regression = self._worker(("regression",), self.models[self.serving])
        self.vision = self._worker(("vision",), self.models[self.serving])
        return self

    def close(self) -> None:
        for worker in (self.regression, self.vision):
            if worker is not None:
                worker.close()
        self.redis.close()

    def _worker(self, queues: tuple[str, ...], model: Path) -> WorkerProcess:
        log = self.workdir / f"worker-{len(self.logs)}.log"
        self.logs.append(log)
        env = {**self.env, "INFERQ_REGRESSOR_PATH": str(model)}
        return WorkerProcess(self.url, queues, env=env, log_path=log).start(timeout_s=180)

    def exited(self) -> list[str]:
        """Workers that stopped on their own (no fault stops one without replacing it):
        each is named and replaced, so the soak goes on and its report fails."""
        gone = []
        for queue in ("regression", "vision"):
            worker: WorkerProcess | None = getattr(self, queue)
            code = None if worker is None or worker.process is None else worker.process.poll()
            if worker is not None and code is not None:
                gone.append(f"the {queue} worker exited on its own (code {code})")
                worker.close()
                setattr(self, queue, self._worker((queue,), self.models[self.serving]))
        return gone

    def dead_letters(self) -> dict[str, int]:
        """The dead-letter list at the end, counted by reason (its first 60 characters)."""
        with redis.Redis.from_url(self.url) as client:
            letters = dead_letters.read(client)
        return dict(Counter(str(letter.fields.get("reason", "?"))[:60] for letter in letters))

    def unacked_left(self, timeout_s: float = 30.0) -> tuple[int, float]:
        """Jobs still unacked once the traffic is over, and how long they took to clear.
        None may stay parked (issue 19): what a fault left there (a restore that met a
        stopped Redis, a killed worker's jobs, a record whose message never reached a
        worker) is swept back within seconds and answered or acked."""
        started = time.monotonic()
        with redis.Redis.from_url(self.url) as client:
            while (left := int(client.hlen(UNACKED_KEY))) > 0:
                if time.monotonic() - started >= timeout_s:
                    break
                time.sleep(0.2)  # polling Redis, deadline-bounded
        return left, round(time.monotonic() - started, 1)

    def worker_pids(self) -> list[int]:
        return [w.pid for w in (self.regression, self.vision) if w is not None]

    # -- faults ----------------------------------------------------------------------

    def kill_worker(self) -> str:
        """kill -9 the regression worker mid-run; a fresh one takes its queue."""
        assert self.regression is not None
        self.regression.stop(sig=signal.SIGKILL)
        self.regression = self._worker(("regression",), self.models[self.serving])
        return "regression worker killed (SIGKILL) and replaced"

    def pause_worker(self, seconds: float = 3.0) -> str:
        """SIGSTOP the regression worker (a VM pause, a GC storm), then let it go on."""
        assert self.regression is not None
        os.kill(self.regression.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)  # the fault itself
        finally:
            os.kill(self.regression.pid, signal.SIGCONT)
        return f"regression worker paused {seconds:g} s"

    def restart_redis(self) -> str:
        """Stop Redis (its AOF keeps the queues) and start it again on the same port."""
        port, data_dir = self.redis.port, self.redis.data_dir
        self.redis.stop()
        self.redis = RedisServer(port, appendonly=True, data_dir=data_dir).start()
        return "Redis restarted"

    def stall_redis(self, seconds: float = 4.0) -> str:
        """SIGSTOP Redis: no error, no answer, for longer than timeouts usually allow."""
        assert self.redis.process is not None
        os.kill(self.redis.process.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)  # the fault itself
        finally:
            os.kill(self.redis.process.pid, signal.SIGCONT)
        return f"Redis stalled {seconds:g} s"

    def push_garbage(self) -> str:
        """Entries that once stopped a worker, onto both served queues."""
        entries = [b"5", b"[]", b"{}", b"\xff not json", b"[" * 3000 + b"]" * 3000]
        entries.append(b'{"properties": {"delivery_tag": "x"}, "headers": {"id": "soak-junk"}}')
        client = redis.Redis.from_url(self.url)
        with client:
            for queue in (REGRESSION_QUEUE, VISION_QUEUE):
                client.lpush(queue, *entries)
        return f"{2 * len(entries)} garbage entries pushed"

    def roll_out(self) -> str:
        """Replace the regression worker by one serving the other model version."""
        assert self.regression is not None
        self.regression.stop()  # warm shutdown: what it holds is answered first
        self.serving = 1 - self.serving
        self.regression = self._worker(("regression",), self.models[self.serving])
        return f"regressor rolled out: now {self.versions[self.serving]}"
