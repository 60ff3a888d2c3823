"""What a waiting command says about its queue's workers, check after check
(inferq.cli.waiting): once at the start, again while none serves, and when one is back."""

from __future__ import annotations

from inferq.cli.waiting import REPEAT_S, _Notices
from inferq.ops.health import NodeReport

WORKER = NodeReport("w1@host", frozenset({"q"}), {"regressor": "v1"})


def test_no_worker_at_the_start_is_said_at_once_then_every_repeat() -> None:
    notices = _Notices("q", "regression")
    assert notices.seen(None, 0.0) == (
        "inferq: no worker serves queue q yet (start one: inferq worker --queues "
        "regression); still waiting"
    )
    assert notices.seen(None, REPEAT_S - 1) is None
    assert notices.seen(None, REPEAT_S) == (
        f"inferq: still no worker serves queue q ({REPEAT_S:.0f} s; start one: inferq "
        "worker --queues regression); still waiting"
    )
    assert notices.seen(WORKER, REPEAT_S + 2) == "inferq: worker w1@host serves queue q again"
    assert notices.seen(WORKER, REPEAT_S + 12) is None


def test_a_worker_lost_mid_run_is_said_after_two_checks_and_its_return_too() -> None:
    notices = _Notices("q", "regression")
    assert notices.seen(WORKER, 0.0) is None  # served: nothing to say
    assert notices.seen(None, 10.0) is None  # one missed reply may be a busy worker
    line = notices.seen(None, 12.0)
    assert line is not None and "no worker serves queue q any more" in line
    assert notices.seen(None, 14.0) is None
    assert notices.seen(WORKER, 16.0) == "inferq: worker w1@host serves queue q again"
    assert notices.seen(None, 26.0) is None  # a new time without one starts over
