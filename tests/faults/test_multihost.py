"""Redis and two workers on three hosts (network namespaces, see inferq/bench/netns.py); one
worker's cable is pulled at the switch in the middle of a run.

The promise under test (README, "Delivery guarantees"): the jobs the cut-off worker
held, unacked, go back to the queue once the visibility timeout has passed, and the
other worker, still running, runs them; every job ends with exactly one result, 0 lost.
Nothing is resent for those jobs. Only the one message Redis may have been handing to
the worker at the cut (popped, not yet recorded as unacked: the README's "one gap") is
left to the producer's resend, as the README says. When the cable is plugged back in,
the cut-off worker's late writes change no answer, and nothing is left in Redis to run
again.

And a producer whose own cable is pulled gets an error within about
INFERQ_REDIS_TIMEOUT_S instead of waiting for TCP to give up.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from inferq.bench.netns import Lan, why_no_namespaces
from inferq.core.contract import PredictResult
from inferq.core.processes import Managed, stop_process
from inferq.core.settings import Settings
from inferq.errors import BrokerUnavailable
from inferq.ops.redis_server import redis_server_binary, wait_for_ping
from inferq.ops.worker_process import WorkerProcess
from producer import Client, Handle
from tests.support import delivery
from tests.support.cut import CutPlan
from tests.support.delivery import Outcomes, executions, rows
from tests.support.redis_clients import redis_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

JOBS = 1000
QUEUE = "multihost"
REDIS_PORT = 6379
VISIBILITY_TIMEOUT_S = 5
# After the visibility timeout a running worker must notice the expired jobs and run
# them: this long at most.
REDELIVERY_MARGIN_S = 25


class NamespacedRedis(Managed):
    """redis-server on a host of a Lan, listening on that host's address."""

    def __init__(self, lan: Lan, host: str, data_dir: Path) -> None:
        self.lan, self.host, self.data_dir = lan, host, data_dir
        self.url = f"redis://{lan.address(host)}:{REDIS_PORT}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> NamespacedRedis:
        argv = [str(redis_server_binary()), "--port", str(REDIS_PORT)]
        argv += ["--bind", self.lan.address(self.host), "--protected-mode", "no"]
        argv += ["--dir", str(self.data_dir), "--save", "", "--appendonly", "no"]
        with (self.data_dir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                self.lan.exec_argv(self.host, argv), stdout=log, stderr=subprocess.STDOUT
            )
        # Reached from the root namespace, through the switch.
        log = self.data_dir / "redis.log"
        with redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1) as client:
            wait_for_ping(client, self.process, timeout_s, lambda: log.read_text()[-800:])
        return self

    def close(self) -> None:
        if self.process is not None:
            stop_process(self.process, 10.0)


@pytest.fixture()
def lan() -> Iterator[Lan]:
    reason = why_no_namespaces()
    if reason is not None:
        pytest.skip(f"the multi-host test runs hosts in network namespaces: {reason}")
    with Lan(["redis", "w1", "w2"]) as net:
        yield net


@pytest.fixture()
def redis_host(lan: Lan, tmp_path: Path) -> Iterator[NamespacedRedis]:
    (tmp_path / "redis").mkdir()
    with NamespacedRedis(lan, "redis", tmp_path / "redis") as server:
        yield server


@pytest.fixture()
def logs(tmp_path: Path) -> dict[str, Path]:
    return {host: tmp_path / f"{host}.log" for host in ("w1", "w2")}


@pytest.fixture()
def env(worker_env: dict[str, str]) -> dict[str, str]:
    return {
        **worker_env,
        "INFERQ_REGRESSION_QUEUE": QUEUE,
        "INFERQ_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
        # Jobs wait a while for their batch to fill: a worker always holds some, unacked.
        "INFERQ_MAX_WAIT_MS": "200",
        "INFERQ_FLUSH_WHEN_DRAINED": "false",
    }


@pytest.fixture()
def workers(
    lan: Lan, redis_host: NamespacedRedis, env: dict[str, str], logs: dict[str, Path]
) -> Iterator[dict[str, WorkerProcess]]:
    """One worker per host, started side by side (each loads TensorFlow for seconds)."""
    argv = [sys.executable, "-m", "inferq", "worker", "--queues", "regression"]
    started = {
        host: WorkerProcess(redis_host.url, env=env, log_path=log, argv=lan.exec_argv(host, argv))
        for host, log in logs.items()
    }
    try:
        with ThreadPoolExecutor(len(started)) as pool:
            list(pool.map(lambda w: w.start(120), started.values()))
        yield started
    finally:
        for worker in started.values():
            # A worker still cut off cannot finish warmly: not worth a long wait here.
            worker.stop(timeout_s=10, sig=signal.SIGKILL)
            worker.close()


@pytest.fixture()
def client(redis_host: NamespacedRedis, env: dict[str, str]) -> Iterator[Client]:
    with Client(Settings.load({**env, "INFERQ_REDIS_URL": redis_host.url})) as c:
        yield c
        # A result collected after the hosts are gone (one a failed test's traceback
        # holds) would unsubscribe from a Redis address that then leads nowhere, or out
        # of the default route: drop the subscriptions while Redis still runs.
        delivery.drop_subscriptions(c)


Answers = dict[str, tuple[list[float], str]]


def answers(store: redis.Redis, ids: list[str]) -> Answers:
    """Job id -> (earnings, model version) as stored now."""
    keys = [f"celery-task-meta-{i}" for i in ids]
    raw: list[bytes | None] = store.mget(keys)  # type: ignore[assignment]
    metas = [json.loads(r) for r in raw if r is not None]
    return {
        m["task_id"]: (m["result"]["earnings_usd"], m["result"]["model"]["version"])
        for m in metas
        if m["status"] == "SUCCESS"
    }


def answer_all(
    client: Client, store: redis.Redis, handles: list[Handle[PredictResult]]
) -> tuple[Outcomes, set[str]]:
    return delivery.answer_all(
        client, store, handles, QUEUE, VISIBILITY_TIMEOUT_S + REDELIVERY_MARGIN_S
    )


def mend_and_stop(lan: Lan, workers: dict[str, WorkerProcess]) -> float:
    """Plug w1's cable back in, then stop both workers warmly (each finishes or hands back
    what it holds, and exits 0); the seconds that took."""
    lan.mend("w1")
    mended_at = time.monotonic()
    # w1's writes stalled by the cut go out when TCP retries them, on its own backoff:
    # up to about as long as the outage lasted.
    for host, timeout_s in (("w1", 45), ("w2", 15)):
        assert workers[host].stop(timeout_s) == 0, workers[host].log_tail()
    return time.monotonic() - mended_at


def assert_settled(store: redis.Redis, ids: list[str], before: Answers) -> None:
    """The cut-off worker's late writes changed no answer, and nothing is left to run."""
    assert answers(store, ids) == before
    # Nothing queued or unacked: nothing runs again.
    assert delivery.held_by_redis(store, QUEUE) == (set(), set())
    assert len(store.keys("celery-task-meta-*")) == len(ids)  # type: ignore[arg-type]


def test_a_worker_cut_off_mid_run_loses_no_job_and_changes_no_answer(
    lan: Lan,
    redis_host: NamespacedRedis,
    workers: dict[str, WorkerProcess],
    logs: dict[str, Path],
    client: Client,
) -> None:
    store = redis_client(redis_host.url)
    cut = CutPlan(lan, "w1", workers["w2"], store, QUEUE, logs, JOBS)
    handles, sent_at_cut, cut_at = cut.submit_and_cut(client)
    ids = sorted(h.id for h in handles)
    outcomes, resent = answer_all(client, store, handles)
    answered_s = time.monotonic() - cut_at
    assert sorted(outcomes) == ids  # each job answered, once
    failed = [o for o in outcomes.values() if not isinstance(o, PredictResult)]
    assert not failed, failed[:3]
    before = answers(store, ids)
    assert sorted(before) == ids  # one stored success per job id
    stopped_s = mend_and_stop(lan, workers)
    assert_settled(store, ids, before)
    w1, w2 = executions(logs["w1"]), executions(logs["w2"])
    redelivered = set(w1) & set(w2) - resent
    assert redelivered, f"w1 held no unacked job at the cut (after {sent_at_cut} jobs sent)"
    print(
        f"multi-host: {JOBS} jobs, cut after {sent_at_cut} sent, 0 lost; w1 ran {len(w1)}, "
        f"w2 ran {len(w2)}; {len(redelivered)} redelivered, {len(resent)} resent; all "
        f"answered {answered_s:.1f} s after the cut; workers stopped {stopped_s:.1f} s later"
    )


def _timed(call: Callable[[], object], limit_s: float) -> tuple[BaseException | None, float]:
    """``call()`` in a daemon thread: what it raised (None if it returned) and how long it
    took. One still running after ``limit_s`` fails the test (and is left behind)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            call()
        except BaseException as exc:
            outcome["error"] = exc
        outcome["elapsed_s"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert "elapsed_s" in outcome, f"still waiting after {limit_s} s"
    return outcome.get("error"), outcome["elapsed_s"]


def test_a_send_on_a_silently_dead_link_fails_in_seconds_then_works_again(
    lan: Lan, redis_host: NamespacedRedis, env: dict[str, str]
) -> None:
    """Redis's cable is pulled at the switch, and the producer's packets to it vanish
    there: no reset, no close, no unreachable host (a failover, a NAT dropping the
    connection). Without socket timeouts the send waited for TCP to give up, many
    minutes; with them it fails, and once the cable is back the same client sends."""
    timeout_s = 1.0
    overrides = {"INFERQ_REDIS_URL": redis_host.url, "INFERQ_REDIS_TIMEOUT_S": str(timeout_s)}
    settings = Settings.load({**env, **overrides})
    row = rows(1)[0]
    lan.pin_neighbour("redis")
    with Client(settings) as client:
        client.submit(row)  # connected; the job waits in its queue (no worker here)
        lan.cut("redis")
        try:
            error, elapsed_s = _timed(lambda: client.submit(row), limit_s=100)
        finally:
            lan.mend("redis")
        print(f"dead link: send failed after {elapsed_s:.1f} s: {type(error).__name__}: {error}")
        # The publish (kombu) or the result subscription made at send time (Celery's
        # result consumer, after 20 reconnect attempts) gives up first: either way, a
        # typed error for the caller.
        assert isinstance(error, BrokerUnavailable), repr(error)
        assert error.code == "broker_unavailable"
        again, _ = _timed(lambda: client.submit(row), limit_s=60)
        assert again is None, again
        delivery.drop_subscriptions(client)
