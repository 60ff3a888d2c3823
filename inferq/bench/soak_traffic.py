"""The soak's traffic: stream predictions, image classifications and bulk runs, each
answer checked against the model run in this process.

Each kind runs in its own thread with its own client, sends steadily whatever the
faults do (a send Redis refuses is tried again), and tallies what it sent, what came
back right, wrong or as an error, and what never came back. A job unanswered for a
while is resent if Redis no longer holds it (the client's cover for the BRPOP gap).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from inferq.core.settings import Settings
from inferq.errors import BrokerUnavailable, InferqError
from producer.client import Client
from producer.handles import Handle

RESEND_AFTER_S = 15.0
TICK_S = 0.1


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    wrong: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    send_retries: int = 0
    resent: int = 0
    lost: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**vars(self), "errors": dict(self.errors), "notes": self.notes[:5]}


# What a right answer is: (the job's index in the pool, its result) -> right or not.
Check = Callable[[int, Any], bool]
Send = Callable[[Client, int], Handle[Any]]


class JobTraffic(threading.Thread):
    """Jobs at a steady rate from a pool of inputs; answers checked as they come."""

    def __init__(
        self, settings: Settings, send: Send, check: Check, pool_size: int, per_s: float
    ) -> None:
        super().__init__(name="soak-traffic", daemon=True)
        self.settings, self.send, self.check = settings, send, check
        self.pool_size, self.per_s = pool_size, per_s
        self.tally = Tally()
        self.stop = threading.Event()
        self._pending: dict[str, tuple[Handle[Any], int, float]] = {}

    def run(self) -> None:
        with Client(self.settings) as client:
            started, index = time.monotonic(), 0
            while not self.stop.is_set():
                due = int((time.monotonic() - started) * self.per_s)
                while self.tally.sent < due and not self.stop.is_set():
                    self._send(client, index % self.pool_size)
                    index += 1
                self._collect(client)
                self.stop.wait(TICK_S)
            self._drain(client, deadline_s=180)

    def _send(self, client: Client, index: int) -> None:
        while not self.stop.is_set():
            try:
                handle = self.send(client, index)
            except BrokerUnavailable:
                self.tally.send_retries += 1  # Redis is down: the producer tries again
                time.sleep(0.5)
                continue
            self.tally.sent += 1
            self._pending[handle.id] = (handle, index, time.monotonic())
            return

    def _collect(self, client: Client) -> None:
        if not self._pending:
            return
        try:
            stored = list(
                client.app.backend.get_many(list(self._pending), interval=0, max_iterations=1)
            )
        except Exception:  # Redis restarting or stalled: collect on the next tick
            return
        for task_id, meta in stored:
            handle, index, _ = self._pending.pop(task_id)
            self._judge(handle, index, meta)
        self._resend_overdue()

    def _judge(self, handle: Handle[Any], index: int, meta: Mapping[str, Any]) -> None:
        try:
            result = handle.outcome(meta["status"], meta["result"])
        except InferqError as exc:
            self.tally.errors[str(exc.info.get("code"))] += 1
            return
        self.tally.answered += 1
        if not self.check(index, result):
            self.tally.wrong += 1
            self.tally.notes.append(f"wrong answer for input {index}: {result!r:.200}")

    def _resend_overdue(self) -> None:
        now = time.monotonic()
        for task_id, (handle, index, since) in list(self._pending.items()):
            if now - since < RESEND_AFTER_S:
                continue
            with contextlib.suppress(Exception):  # Redis down: try again later
                self.tally.resent += handle.resend_if_lost()
            self._pending[task_id] = (handle, index, now)

    def _drain(self, client: Client, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while self._pending and time.monotonic() < deadline:
            self._collect(client)
            time.sleep(0.2)  # polling the result store for the last answers
        self.tally.lost = len(self._pending)


class BulkTraffic(threading.Thread):
    """`inferq score` on one file again and again (rerun with --resume after a failure);
    each output must match one model version, every row of it."""

    def __init__(
        self, env: dict[str, str], source: Path, outputs: Path, references: Mapping[str, np.ndarray]
    ) -> None:
        super().__init__(name="soak-bulk", daemon=True)
        self.env, self.source, self.outputs = env, source, outputs
        self.references = references  # model version -> dollars per row, in process
        self.tally = Tally()
        self.versions: Counter[str] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        table = pacsv.read_csv(self.source)
        run = 0
        while not self.stop.is_set():
            # A column naming the run makes each run's input (and so its chunk ids) its
            # own: a rerun of the same file would count as executions run twice.
            source = self.outputs / f"in-{run}.csv"
            pacsv.write_csv(table.append_column("run", pa.array([run] * table.num_rows)), source)
            out = self.outputs / f"run-{run}.csv"
            self.tally.sent += 1
            if self._score(source, out):
                self._check(out)
            source.unlink()
            run += 1

    def _score(self, source: Path, out: Path) -> bool:
        argv = [sys.executable, "-m", "inferq", "score", str(source), "-o", str(out)]
        argv += ["--chunk-rows", "2000", "--in-flight", "2", "--resend-after-s", "15"]
        argv += ["--chunk-timeout-s", "120"]  # a run stuck that long fails, and is resumed
        for attempt in range(6):
            extra = ["--resume"] if attempt else []
            done = subprocess.run(
                [*argv, *extra], env=self.env, capture_output=True, text=True, check=False
            )
            if done.returncode == 0:
                return True
            self.tally.send_retries += 1
            self.tally.notes.append(f"exit {done.returncode}: {done.stderr.strip()[-200:]}")
        self.tally.lost += 1
        return False

    def _check(self, out: Path) -> None:
        got = np.asarray(pacsv.read_csv(out).column("earnings_usd").to_pylist(), dtype=float)
        matches = [
            version
            for version, want in self.references.items()
            if len(got) == len(want) and np.allclose(got, want, rtol=1e-5, atol=0.0)
        ]
        if len(matches) == 1:
            self.tally.answered += 1
            self.versions[matches[0]] += 1
        else:
            self.tally.wrong += 1
            self.tally.notes.append(f"{out.name}: rows match {matches or 'no'} model version")
        out.unlink()
