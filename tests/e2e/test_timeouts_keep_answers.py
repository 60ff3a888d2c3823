"""A command that times out prints what it has: `inferq predict --csv` and `inferq
classify` against a live worker that answers some jobs and holds the rest past
--timeout-s (its last batch never fills: a long INFERQ_MAX_WAIT_MS), so every answered
row or image is printed in its place, the others with the error `timeout`, exit 3."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferq.core import exit_codes
from inferq.core.constants import COURSE_FEATURES
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess
from tests.support import photos
from tests.support.harness import cli_env, run_inferq

pytestmark = pytest.mark.e2e

BATCH = 4  # a batch flushes at once when full; a partial one waits HOLD_MS
HOLD_MS = 60_000
TIMEOUT_S = "6"


@pytest.fixture(scope="module")
def holding_env(worker_env: dict[str, str], vision_env: dict[str, str]) -> dict[str, str]:
    tag = os.getpid()
    return {
        **worker_env,
        **vision_env,
        "INFERQ_REGRESSION_QUEUE": f"test-holding-regression-{tag}",
        "INFERQ_VISION_QUEUE": f"test-holding-vision-{tag}",
        "INFERQ_MAX_BATCH_SIZE": str(BATCH),
        "INFERQ_FLUSH_WHEN_DRAINED": "false",  # the partial batch must wait HOLD_MS
        "INFERQ_MAX_WAIT_MS": str(HOLD_MS),
        "INFERQ_VISION_MAX_BATCH_SIZE": str(BATCH),
        "INFERQ_VISION_MAX_WAIT_MS": str(HOLD_MS),
    }


@pytest.fixture(scope="module")
def holding_worker(
    redis_server: RedisServer, holding_env: dict[str, str]
) -> Iterator[WorkerProcess]:
    queues = ("regression", "vision")
    with WorkerProcess(redis_server.url, queues, env=holding_env) as proc:
        yield proc


@pytest.fixture()
def env(
    holding_worker: WorkerProcess, holding_env: dict[str, str], redis_server: RedisServer
) -> dict[str, str]:
    settings = Settings.load({**holding_env, "INFERQ_REDIS_URL": redis_server.url})
    return {**cli_env(settings), "INFERQ_VISION_QUEUE": settings.vision_queue}


def _answered_prefix(flags: list[bool]) -> int:
    """How many lead ``flags`` are True; asserts that none after them is."""
    count = flags.index(False) if False in flags else len(flags)
    assert not any(flags[count:]), f"answers out of order: {flags}"
    return count


def test_a_timed_out_predict_csv_prints_every_answered_row_in_place(
    env: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    with (data_dir / "test.csv").open() as f:
        lines = f.read().splitlines()[: BATCH + 3]  # the header and BATCH + 2 rows
    source.write_text("\n".join(lines) + "\n")
    argv = ["predict", "--csv", str(source), "--rows-per-job", "1", "--timeout-s", TIMEOUT_S]
    proc = run_inferq(*argv, env=env)
    assert proc.returncode == exit_codes.UNANSWERED, proc.stderr
    out = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(out) == len(lines) - 1  # every row, in order, answered or not
    answered = [r["earnings_usd"] != "" for r in out]
    count = _answered_prefix(answered)
    assert 1 <= count < len(out)  # a full batch answered, the partial one held
    assert all(r["error"] == "" and float(r["earnings_usd"]) > 0 for r in out[:count])
    assert {r["error"] for r in out[count:]} == {f"timeout: no answer within {TIMEOUT_S} s"}
    missing = len(out) - count
    assert f"{missing} of {len(out)} row(s) not answered within {TIMEOUT_S} s" in proc.stderr


def test_a_timed_out_classify_prints_every_answered_image_in_place(
    env: dict[str, str], tmp_path: Path
) -> None:
    names = ["chelsea", "coffee", "astronaut", "chelsea", "coffee", "astronaut"]
    files = []
    for index, name in enumerate(names[: BATCH + 2]):
        files.append(tmp_path / f"{index}-{name}.jpg")
        files[-1].write_bytes(photos.photo(name))
    argv = ["classify", *map(str, files), "--json", "--timeout-s", TIMEOUT_S]
    proc = run_inferq(*argv, env=env)
    assert proc.returncode == exit_codes.UNANSWERED, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["source"] for r in records] == [str(f) for f in files]
    count = _answered_prefix(["labels" in r for r in records])
    assert 1 <= count < len(files)
    timeout = {"code": "timeout", "message": f"no answer within {TIMEOUT_S} s"}
    assert all(r["error"] == timeout for r in records[count:])
    assert f"{len(files) - count} of {len(files)} image(s) not answered" in proc.stderr


def test_a_timed_out_predict_json_prints_the_error_in_each_row_s_place(
    env: dict[str, str],
) -> None:
    # One row: with what earlier tests left held, still short of a full batch.
    row = {name: 1.0 for name in COURSE_FEATURES}
    proc = run_inferq("predict", "--json", json.dumps([row]), "--timeout-s", TIMEOUT_S, env=env)
    assert proc.returncode == exit_codes.UNANSWERED, proc.stderr
    timeout = {"code": "timeout", "message": f"no answer within {TIMEOUT_S} s"}
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [{"row": 0, "error": timeout}]
    assert f"1 row(s) not answered within {TIMEOUT_S} s" in proc.stderr
