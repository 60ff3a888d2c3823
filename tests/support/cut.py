"""Cutting one worker's cable mid-run so that it holds jobs at the cut, every time.

The multi-host test checks that the jobs a cut-off worker held come back to the other
worker. Cut at a moment when the first holds none (its batch just flushed, and the
producer paused to look at the logs) and there is nothing to check: that happened
once in many runs. So, once both workers are under way, the other worker is paused
(SIGSTOP), a burst goes to the first one alone, and its cable is cut while those jobs
wait in its batch window (INFERQ_MAX_WAIT_MS, long in that test).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from inferq.bench.netns import Lan
from inferq.core.contract import PredictResult
from inferq.ops.worker_process import WorkerProcess
from producer import Client, Handle
from tests.support.delivery import rows

# Jobs both workers must have run before the cut: the run is under way on both hosts.
RAN_BEFORE_CUT = 20
# How often (in jobs sent) the producer looks whether it is time for the cut.
CUT_CHECK_EVERY = 25
# Jobs sent to the first worker alone just before its cut.
BURST = 16


def ran(log: Path) -> int:
    return len(re.findall(r"task=inferq\.predict_earnings", log.read_text()))


def both_ran(logs: dict[str, Path], count: int) -> bool:
    return min(ran(log) for log in logs.values()) >= count


def wait_until(check: object, what: object, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.005)  # polling the run's progress, deadline-bounded


@contextmanager
def paused(worker: WorkerProcess) -> Iterator[None]:
    """The worker's whole process group stopped for the block (a VM paused)."""
    os.killpg(worker.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(worker.pid, signal.SIGCONT)


@dataclass
class CutPlan:
    lan: Lan
    host: str  # the worker whose cable is cut
    other: WorkerProcess
    store: redis.Redis
    queue: str
    logs: dict[str, Path]
    jobs: int

    def submit_and_cut(self, client: Client) -> tuple[list[Handle[PredictResult]], int, float]:
        """Send the jobs and cut the host's cable once both workers have run some, with
        a burst of jobs held by the host. The handles, how many jobs were sent before
        the cut, and when it came."""
        sent = rows(self.jobs)
        handles: list[Handle[PredictResult]] = []
        for row in sent:
            handles.append(client.submit(row))
            if len(handles) % CUT_CHECK_EVERY == 0 and both_ran(self.logs, RAN_BEFORE_CUT):
                break
        logs = self.logs
        wait_until(
            lambda: both_ran(logs, RAN_BEFORE_CUT), lambda: {h: ran(p) for h, p in logs.items()}
        )
        with paused(self.other):
            burst = sent[len(handles) : len(handles) + BURST]
            handles += [client.submit(row) for row in burst]
            # Taken off the queue: by the host alone, which holds them in its batch window.
            wait_until(lambda: self.store.llen(self.queue) == 0, "the burst was not fetched")
            self.lan.cut(self.host)
            cut_at = time.monotonic()
        sent_at_cut = len(handles)
        handles += [client.submit(row) for row in sent[sent_at_cut:]]
        return handles, sent_at_cut, cut_at
