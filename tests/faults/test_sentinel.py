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

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferq.core.contract import PredictResult
from inferq.core.settings import Settings
from inferq.errors import BrokerUnavailable, JobTimeout
from inferq.ops.worker_process import WorkerProcess
from producer import Client, Handle
from tests.support.delivery import (
    Outcomes,
    answered_within,
    drop_subscriptions,
    executions,
    rows,
)
from tests.support.sentinel import SentinelGroup, wait_for

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
