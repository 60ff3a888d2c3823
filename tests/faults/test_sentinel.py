"""Redis Sentinel: the primary is killed (SIGKILL) mid-run; the Sentinels promote the
replica; the worker and the producer, both given only the Sentinels' addresses
(``sentinel://``, INFERQ_SENTINEL_MASTER), find the new master on their own, and every
job is answered.

What may be lost (docs/operations.md, "Redis Sentinel"): replication is asynchronous,
so the writes the primary took in its last moments may be missing on the replica: a
queued job, a stored result, an ack. The client's resend (same id) covers them; the
test counts how many it had to cover, and sends made while no master was known fail
with a typed BrokerUnavailable and are retried by the caller, as the docs say.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from inferq.core.chunks import chunk_id, task_id_of
from inferq.core.contract import PredictResult
from inferq.core.settings import Settings
from inferq.errors import BrokerUnavailable, JobTimeout
from inferq.ops.worker_process import WorkerProcess
from producer import Client, Handle
from producer.bulk.score_file import input_digest
from tests.support.bulk import products
from tests.support.delivery import (
    Outcomes,
    answered_within,
    drop_subscriptions,
    executions,
    rows,
)
from tests.support.sentinel import SentinelGroup, forget_jobs, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

MASTER = "inferq-primary"
QUEUE = "sentinel-regression"
JOBS = 600
KILL_AFTER_RAN = 100  # jobs the worker has run when the primary is killed
FAILOVER_LIMIT_S = 30  # Sentinel's promotion and both sides' reconnection, at most
ANSWER_WINDOW_S = 25  # every job not lost by the failover is answered within this
# The writes a failover can lose are those of the replication lag before the kill
# (here, on one machine, milliseconds): far fewer than the jobs of one worker's slots.
MAX_RESENT = 32


@pytest.fixture()
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup(MASTER) as servers:
        yield servers


@pytest.fixture()
def env(worker_env: dict[str, str], group: SentinelGroup) -> dict[str, str]:
    return {
        **worker_env,
        "INFERQ_REDIS_URL": group.url,
        "INFERQ_SENTINEL_MASTER": MASTER,
        "INFERQ_REGRESSION_QUEUE": QUEUE,
        # A silent connection to the dead primary fails in 2 s rather than 10.
        "INFERQ_REDIS_TIMEOUT_S": "2",
    }


@pytest.fixture()
def worker(env: dict[str, str], group: SentinelGroup, tmp_path: Path) -> Iterator[WorkerProcess]:
    argv = [sys.executable, "-m", "inferq", "worker", "--queues", "regression"]
    log = tmp_path / "worker.log"
    with WorkerProcess(group.url, env=env, log_path=log, argv=argv) as proc:
        yield proc


def submit_until_sent(client: Client, row: dict[str, float]) -> tuple[Handle[PredictResult], int]:
    """Send one job, retrying while no master is known (as a caller does on the typed
    BrokerUnavailable); the handle and how many tries failed."""
    deadline, failed = time.monotonic() + FAILOVER_LIMIT_S, 0
    while True:
        try:
            return client.submit(row), failed
        except BrokerUnavailable:
            failed += 1
            assert time.monotonic() < deadline, "no send went through after the failover"
            time.sleep(0.2)  # a caller's back-off between tries; deadline-bounded


def answered_by_then(
    client: Client, handles: list[Handle[PredictResult]], timeout_s: float
) -> tuple[Outcomes, list[Handle[PredictResult]], float]:
    """The answers that come within ``timeout_s`` (nothing resent), the jobs left
    without one, and when (monotonic) the last answer came."""
    outcomes: Outcomes = {}
    last = time.monotonic()
    try:
        for handle, outcome in client.as_completed(handles, timeout_s=timeout_s):
            outcomes[handle.id], last = outcome, time.monotonic()
    except JobTimeout:
        pass
    return outcomes, [h for h in handles if h.id not in outcomes], last


def ran(worker: WorkerProcess) -> int:
    return sum(executions(worker.log_path).values())


def test_primary_killed_mid_run_the_replica_takes_over_and_every_job_is_answered(
    group: SentinelGroup, worker: WorkerProcess, env: dict[str, str]
) -> None:
    old_primary, replica_port = group.primary.port, group.replica.port
    assert group.master_port() == old_primary
    sent = rows(JOBS)
    handles: list[Handle[PredictResult]] = []
    failed_sends = 0
    with Client(Settings.load(env)) as client:
        for index, row in enumerate(sent):
            if index == JOBS // 2:
                wait_for(lambda: ran(worker) >= KILL_AFTER_RAN, "worker running jobs", 60)
                assert group.primary.process is not None
                group.primary.process.send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
            handle, failed = submit_until_sent(client, row)
            handles.append(handle)
            failed_sends += failed
        sent_all_s = time.monotonic() - killed_at
        wait_for(lambda: group.master_port() == replica_port, "replica promoted", FAILOVER_LIMIT_S)
        outcomes, lost, last_answer = answered_by_then(client, handles, ANSWER_WINDOW_S)
        for handle in lost:  # the writes the failover lost: the client's resend covers them
            handle.resend()
        resent, still = answered_within(client, lost, 30)
        answered_s = last_answer - killed_at
        # Results collected after the servers stop would unsubscribe from them, with
        # Celery's patient reconnects (tests/support/delivery.py).
        drop_subscriptions(client)
    assert not still, f"{len(still)} resent job(s) unanswered"
    outcomes |= resent
    assert sorted(outcomes) == sorted(h.id for h in handles)  # each job answered, once
    failures = [o for o in outcomes.values() if not isinstance(o, PredictResult)]
    assert not failures, failures[:3]
    assert worker.process is not None and worker.process.poll() is None  # the same worker
    after_kill = set(h.id for h in handles[JOBS // 2 :]) - {h.id for h in lost}
    assert after_kill & set(executions(worker.log_path)), "the worker ran nothing after it"
    assert len(lost) <= MAX_RESENT, f"{len(lost)} jobs lost by the failover"
    print(
        f"sentinel failover: {JOBS} jobs, primary killed after {JOBS // 2} sent; "
        f"{failed_sends} send tries failed while no master was known, the rest sent "
        f"{sent_all_s:.1f} s after the kill; {len(lost)} job(s) lost and resent; the others "
        f"answered {answered_s:.1f} s after the kill; worker ran {ran(worker)} (pid unchanged)"
    )


BULK_ROWS, CHUNK_ROWS = 12_000, 300  # 40 chunks, 4 in flight
STOP_AFTER_PARTS = 8
# From the run's going on (the new primary known) to its end: the chunks left, and the
# lost ones resent once the run sees the broker back, not after two --resend-after-s.
AFTER_FAILOVER_LIMIT_S = 30


def _chunk_ids(source: Path, output: Path, parts_dir: Path) -> list[str]:
    """Every chunk's task id, as the run derives them (its manifest names the model)."""
    version = json.loads((parts_dir / "manifest.json").read_text())["model_version"]
    digest, out = input_digest(source)[0], str(output.resolve())
    chunks = -(-BULK_ROWS // CHUNK_ROWS)
    return [task_id_of(chunk_id(digest, CHUNK_ROWS, i, version, out)) for i in range(chunks)]


def _parts(parts_dir: Path) -> set[int]:
    return {int(p.name.split(".")[0]) for p in parts_dir.glob("*.part")}


@pytest.mark.timeout(480)  # the old client's stall (2 x 120 s) ends the test by its assert
def test_a_bulk_run_resends_what_a_failover_lost_within_seconds_of_the_new_primary(
    group: SentinelGroup, worker: WorkerProcess, env: dict[str, str], tmp_path: Path
) -> None:
    src, out = products(tmp_path / "in.csv", BULK_ROWS, bad=False), tmp_path / "out.csv"
    parts_dir = tmp_path / "out.csv.inferq-parts"
    argv = [sys.executable, "-m", "inferq", "score", str(src), "-o", str(out)]
    argv += ["--chunk-rows", str(CHUNK_ROWS), "--chunk-timeout-s", "400"]  # resend: 120 s
    run = subprocess.Popen(argv, env={**os.environ, **env}, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(_parts(parts_dir)) >= STOP_AFTER_PARTS, "parts written", 120)
        # The run stops reading answers; the worker answers what it has on the primary.
        os.kill(run.pid, signal.SIGSTOP)
        ids = _chunk_ids(src, out, parts_dir)
        in_flight = [t for i, t in enumerate(ids) if i not in _parts(parts_dir)]
        with redis.Redis(port=group.primary.port) as primary:
            wait_for(lambda: primary.exists(f"celery-task-meta-{in_flight[0]}"), "answer", 60)
        assert group.primary.process is not None
        group.primary.process.send_signal(signal.SIGKILL)
        wait_for(lambda: group.master_port() == group.replica.port, "promotion", FAILOVER_LIMIT_S)
        # What the replica never got, as seen: the oldest chunk in flight was answered on
        # the old primary only, and leaves no trace on the new one.
        removed = forget_jobs(group.replica.port, QUEUE, in_flight[:1])
        os.kill(run.pid, signal.SIGCONT)
        resumed_at = time.monotonic()
        _, stderr = run.communicate(timeout=420)
        after_s = time.monotonic() - resumed_at
    finally:
        run.kill()
        run.communicate()
    assert run.returncode == 0, stderr
    assert f"scored {BULK_ROWS} rows: ok={BULK_ROWS}" in stderr
    assert len(out.read_text().splitlines()) == BULK_ROWS + 1
    print(
        f"bulk failover: the run stopped after {STOP_AFTER_PARTS}+ of {len(ids)} chunks, its "
        f"oldest in flight answered on the primary, the primary killed, the replica promoted, "
        f"{removed} trace(s) of that chunk removed from it (never replicated); the run went "
        f"on and ended {after_s:.1f} s later"
    )
    assert after_s < AFTER_FAILOVER_LIMIT_S
