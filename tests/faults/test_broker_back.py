"""A client that sees Redis come back checks its jobs at once (producer.broker_watch):
jobs a restart lost are resent within seconds, not after two resend intervals."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess
from producer import Client
from producer.broker_watch import BrokerWatch
from producer.handles import RECHECK_AFTER_S, Schedule
from tests.support.delivery import rows

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

RESEND_AFTER_S = 120.0  # as `inferq score`: two rounds of it would be 240 s
ANSWERED_WITHIN_S = 15.0


def test_a_schedule_told_the_broker_came_back_checks_now_and_soon_then_as_usual() -> None:
    schedule = Schedule.start(600, RESEND_AFTER_S)
    assert not schedule.resend_due()
    schedule.recheck_now()
    assert schedule.resend_due()  # the first round: now
    assert schedule.resend_at is not None
    assert schedule.resend_at - time.monotonic() <= RECHECK_AFTER_S
    schedule.resend_at = time.monotonic()  # as if RECHECK_AFTER_S had passed
    assert schedule.resend_due()  # the second round: a job missing at both is resent
    assert schedule.resend_at - time.monotonic() > RESEND_AFTER_S - 1  # then as usual
    plain = Schedule.start(600, None)  # no resends asked for: nothing to check
    plain.recheck_now()
    assert not plain.resend_due()


def test_a_restart_is_a_new_generation_and_a_quiet_redis_is_not() -> None:
    with RedisServer() as server:
        client = Client(Settings.load({"INFERQ_REDIS_URL": server.url}))
        watch = BrokerWatch(lambda: client.app.backend.client, every_s=0)
        assert watch.look() == watch.look() == 0
        server.stop()
        assert watch.look() == 0  # away: nothing to check until it is back
        server.start()
        assert watch.look() == 1
        assert watch.look() == 1
        client.close()


def test_jobs_a_redis_restart_lost_are_resent_within_seconds_of_it_being_back(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**worker_env, "INFERQ_REGRESSION_QUEUE": f"test-restart-lost-{os.getpid()}"}
    with RedisServer() as server:  # no AOF: what was queued is gone after a restart
        settings = Settings.load({**env, "INFERQ_REDIS_URL": server.url})
        with Client(settings) as client:
            handles = [client.submit(row) for row in rows(4)]  # queued; no worker yet
            server.stop()
            server.start()
            with WorkerProcess(server.url, env=env, log_path=tmp_path / "worker.log"):
                started = time.monotonic()
                one = handles[0].wait(60, resend_after_s=RESEND_AFTER_S)
                one_s = time.monotonic() - started
                rest = [
                    r
                    for _, r in client.as_completed(handles[1:], 60, resend_after_s=RESEND_AFTER_S)
                ]
                all_s = time.monotonic() - started
    assert one.earnings_usd[0] > 0
    assert len(rest) == 3 and all(not isinstance(r, Exception) for r in rest)
    print(f"restart lost 4 queued jobs; wait(): {one_s:.1f} s, all: {all_s:.1f} s")
    assert all_s < ANSWERED_WITHIN_S
