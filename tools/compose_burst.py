"""A burst of one-row prediction jobs, run INSIDE an inferq container by
tools/compose_check.py (`docker compose exec -T regression-worker python - N MARK`, this
file on standard input), while the check restarts or kills Redis from outside.

It sends N jobs at a steady pace, prints `MARK` after the MARK-th send so the check can
act mid-burst, sends again any job whose send failed while Redis was away, then waits for
every answer with the client's resend of lost jobs. Last line: `RESULT sent answered
failed send_retries seconds`.
"""

from __future__ import annotations

import sys
import time

from inferq.core.contract import PredictResult
from inferq.core.settings import Settings
from inferq.errors import BrokerUnavailable, InferqError
from producer.client import Client
from producer.handles import Handle

ROW = {
    "critic_rating": 4.0,
    "is_action": 1,
    "is_exclusive_to_us": 0,
    "is_portable": 0,
    "is_role_playing": 1,
    "is_sequel": 1,
    "is_sports": 0,
    "suitable_for_kids": 0,
    "unit_price": 59.99,
}
PACE_S = 0.01  # ~100 jobs/s: the burst lasts long enough for a restart to land inside it
RETRY_S = 0.2
TIMEOUT_S = 300.0
RESEND_AFTER_S = 10.0


def send_all(client: Client, count: int, mark: int) -> tuple[list[Handle[PredictResult]], int]:
    handles = []
    retries = 0
    for index in range(count):
        while True:
            try:
                handles.append(client.submit(ROW))
                break
            except BrokerUnavailable:  # Redis away: the same row again once it is back
                retries += 1
                time.sleep(RETRY_S)
        if index + 1 == mark:
            print("MARK", flush=True)
        time.sleep(PACE_S)
    return handles, retries


def main(count: int, mark: int) -> None:
    started = time.monotonic()
    with Client(Settings.load()) as client:
        handles, retries = send_all(client, count, mark)
        answered = failed = 0
        outcomes = client.as_completed(handles, timeout_s=TIMEOUT_S, resend_after_s=RESEND_AFTER_S)
        for _, outcome in outcomes:
            if isinstance(outcome, InferqError):
                failed += 1
                print(f"job failed: {outcome}", flush=True)
            else:
                answered += 1
    seconds = time.monotonic() - started
    print(f"RESULT {count} {answered} {failed} {retries} {seconds:.1f}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
