"""What the fault tests share: jobs to send, where Redis holds the unanswered ones, and
"every job answered, at most the documented gap resent".

README, "Delivery guarantees", the one gap: Redis pops a message (BRPOP) before the
worker records it as unacked; a fault in between (SIGKILL, a cut link, a Redis
shutdown) strands that message where no redelivery can see it, and the producer's
resend, with the same id, is the cover. Everything else must come back by itself.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import redis

from inferq.core.constants import COURSE_FEATURES
from inferq.core.contract import PredictResult
from inferq.errors import InferqError, JobTimeout
from inferq.tools.sample_data import generate
from producer import Client, Handle

Outcomes = dict[str, PredictResult | InferqError]
# A fault strands at most the one message Redis was handing over at that moment.
MAX_STRANDED = 1


def rows(n: int) -> list[dict[str, float]]:
    cols = generate(n, seed=9)
    return [{f: float(cols[f][i]) for f in COURSE_FEATURES} for i in range(n)]


def executions(*logs: Path) -> dict[str, int]:
    """Job id -> how many times a worker ran it (one fixed-shape log line per run)."""
    counts: dict[str, int] = {}
    for log in logs:
        for job in re.findall(r"job=(\S+) task=inferq\.predict_earnings", log.read_text()):
            counts[job] = counts.get(job, 0) + 1
    return counts


def wait_for_results(url: str, ids: list[str], count: int, timeout_s: float = 60) -> None:
    """Poll the result backend until ``count`` of the jobs have results (a run's progress)."""
    keys = [f"celery-task-meta-{i}" for i in ids]
    deadline = time.monotonic() + timeout_s
    # Closed here: a client left to the garbage collector closes its socket in whatever
    # test runs then, which pytest reports there as an unclosed-socket error.
    with redis.Redis.from_url(url) as store:
        while (done := int(store.exists(*keys))) < count:  # type: ignore[arg-type]
            assert time.monotonic() < deadline, f"only {done} jobs finished"
            time.sleep(0.01)  # polling Redis for the run's progress, deadline-bounded


def held_by_redis(store: redis.Redis, queue: str) -> tuple[set[str], set[str]]:
    """Ids of the jobs Redis still holds: (queued, delivered and not acked)."""
    queued: list[bytes] = store.lrange(queue, 0, -1)  # type: ignore[assignment]
    unacked: list[bytes] = store.hvals("unacked")  # type: ignore[assignment]
    # kombu stores an unacked message as [message, exchange, routing key].
    return (
        {json.loads(m)["headers"]["id"] for m in queued},
        {json.loads(u)[0]["headers"]["id"] for u in unacked},
    )


def answered_within(
    client: Client, handles: list[Handle[PredictResult]], timeout_s: float
) -> tuple[Outcomes, list[Handle[PredictResult]]]:
    """The answers that come within ``timeout_s`` (nothing resent), and the rest."""
    outcomes: Outcomes = {}
    try:
        for handle, outcome in client.as_completed(handles, timeout_s=timeout_s):
            outcomes[handle.id] = outcome
    except JobTimeout:
        pass
    return outcomes, [h for h in handles if h.id not in outcomes]


def answer_all(
    client: Client,
    store: redis.Redis,
    handles: list[Handle[PredictResult]],
    queue: str,
    window_s: float,
) -> tuple[Outcomes, set[str]]:
    """Every job's answer, and the ids the producer had to resend. Within ``window_s``
    the workers must have answered all but the stranded one: none may still wait in
    Redis, queued or unacked (that would be a worker that stopped, or no redelivery)."""
    outcomes, pending = answered_within(client, handles, window_s)
    queued, unacked = (held & {h.id for h in pending} for held in held_by_redis(store, queue))
    assert not unacked, f"{len(unacked)} job(s) still unacked after {window_s} s: not redelivered"
    assert not queued, f"{len(queued)} job(s) still queued after {window_s} s: no worker took them"
    assert len(pending) <= MAX_STRANDED, f"{len(pending)} jobs lost by Redis"
    for handle in pending:
        handle.resend()
    resent, still = answered_within(client, pending, 30)
    assert not still, f"{len(still)} resent job(s) unanswered"
    return outcomes | resent, {h.id for h in pending}


def drop_subscriptions(client: Client) -> None:
    """Forget the client's result subscriptions while its Redis still runs: a result
    collected later (one a failed test's traceback holds) would otherwise unsubscribe
    from a stopped server, and fail in some other test."""
    consumer = client.app.backend.result_consumer
    consumer.stop()
    consumer.subscribed_to.clear()
