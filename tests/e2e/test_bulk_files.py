"""Bulk scoring end to end: real redis-server, real worker processes, real model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from inferq.core.constants import COURSE_FEATURES
from inferq.core.settings import Settings
from inferq.ops.redis_server import RedisServer
from inferq.ops.worker_process import WorkerProcess
from producer import Client
from producer.bulk.score_file import ScoreOptions, score_file
from producer.bulk.scorers import QueueScorer
from tests.support.bulk import products
from tests.support.harness import cli_env

pytestmark = pytest.mark.e2e


def _score(
    settings: Settings, *args: str, timeout_s: float = 180
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "inferq", "score", *args]
    return subprocess.run(
        argv, check=False, env=cli_env(settings), capture_output=True, text=True, timeout=timeout_s
    )


def _table(path: Path) -> pa.Table:
    if path.suffix == ".parquet":
        return pq.read_table(path)
    options = pacsv.ConvertOptions(column_types={"sku": pa.string()}, strings_can_be_null=True)
    return pacsv.read_csv(path, convert_options=options)


def test_csv_through_workers_matches_the_model_in_process(
    worker: WorkerProcess, settings: Settings, tmp_path: Path
) -> None:
    src = products(tmp_path / "in.csv", 500)
    queued = _score(settings, str(src), "-o", str(tmp_path / "q.csv"), "--chunk-rows", "64")
    assert queued.returncode == 1, queued.stderr  # 2 bad rows, --max-errors 0
    assert "scored 500 rows: ok=498 failed=2" in queued.stderr
    local = _score(
        settings, str(src), "-o", str(tmp_path / "l.csv"), "--in-process", "--max-errors", "2"
    )
    assert local.returncode == 0, local.stderr
    q, loc = _table(tmp_path / "q.csv"), _table(tmp_path / "l.csv")
    assert q.column("sku").to_pylist() == [f"g{i}" for i in range(500)]
    assert q.column("error").to_pylist() == loc.column("error").to_pylist()
    assert q.column("error")[10].as_py().startswith("not_a_number: unit_price")
    assert q.column("error")[11].as_py().startswith("missing_field: critic_rating")
    got, want = q.column("earnings_usd").to_numpy(), loc.column("earnings_usd").to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert np.isnan(got[10]) and np.isnan(got[11]) and np.isfinite(np.delete(got, [10, 11])).all()


@pytest.mark.parametrize(
    ("src_suffix", "out_suffix"),
    [(".parquet", ".parquet"), (".parquet", ".jsonl"), (".jsonl", ".jsonl")],
)
def test_every_format_through_workers(
    client: Client, tmp_path: Path, src_suffix: str, out_suffix: str
) -> None:
    table = _table(products(tmp_path / "in.csv", 300, bad=False))
    src = tmp_path / f"in{src_suffix}"
    if src_suffix == ".parquet":
        pq.write_table(table, src)
    else:
        src.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))
    out = tmp_path / f"out{out_suffix}"
    summary = score_file(
        src, out, QueueScorer(client, 60, reuse_stored=False), ScoreOptions(chunk_rows=70)
    )
    assert (summary.rows, summary.ok, summary.chunks) == (300, 300, 5)
    rows = (
        pq.read_table(out).to_pylist()
        if out_suffix == ".parquet"
        else [json.loads(line) for line in out.read_text().splitlines()]
    )
    assert [r["sku"] for r in rows] == [f"g{i}" for i in range(300)]
    assert all(r["error"] is None and r["earnings_usd"] > 0 for r in rows)


def _wait_for_parts(
    parts_dir: Path, count: int, proc: subprocess.Popen[str], timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    while len(list(parts_dir.glob("*.part"))) < count:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "no parts appeared"
        time.sleep(0.02)  # polling the file system for the run's progress, deadline-bounded


def test_a_killed_producer_resumes_to_the_same_bytes(
    worker: WorkerProcess, settings: Settings, tmp_path: Path
) -> None:
    src = products(tmp_path / "in.csv", 3000)
    flags = ("--chunk-rows", "50", "--in-flight", "1", "--max-errors", "2")
    whole = _score(settings, str(src), "-o", str(tmp_path / "whole.csv"), *flags)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "out.csv"
    argv = [sys.executable, "-m", "inferq", "score", str(src), "-o", str(out), *flags]
    proc = subprocess.Popen(argv, env=cli_env(settings), stderr=subprocess.DEVNULL, text=True)
    _wait_for_parts(tmp_path / "out.csv.inferq-parts", 5, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    resumed = _score(settings, str(src), "-o", str(out), *flags, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "scored 3000 rows: ok=2998 failed=2" in resumed.stderr
    assert out.read_bytes() == (tmp_path / "whole.csv").read_bytes()


def test_a_worker_killed_mid_run_loses_nothing(
    redis_server: RedisServer, worker_env: dict[str, str], regressor_path: Path, tmp_path: Path
) -> None:
    queue = "test-bulk-killed"
    env = {**worker_env, "INFERQ_REGRESSION_QUEUE": queue, "INFERQ_VISIBILITY_TIMEOUT_S": "3"}
    settings = Settings.load({**env, "INFERQ_REDIS_URL": redis_server.url})
    src = products(tmp_path / "in.csv", 4000, bad=False)
    flags = ("--chunk-rows", "100", "--in-flight", "3", "--resend-after-s", "10")
    out = tmp_path / "out.csv"
    with WorkerProcess(redis_server.url, env=env) as first:
        argv = [sys.executable, "-m", "inferq", "score", str(src), "-o", str(out), *flags]
        proc = subprocess.Popen(argv, env=cli_env(settings), stderr=subprocess.PIPE, text=True)
        _wait_for_parts(tmp_path / "out.csv.inferq-parts", 3, proc)
        first.stop(sig=signal.SIGKILL)
    with WorkerProcess(redis_server.url, env=env):
        _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    assert "scored 4000 rows: ok=4000 failed=0" in stderr
    table = _table(out)
    assert table.column("sku").to_pylist() == [f"g{i}" for i in range(4000)]
    assert table.column("error").null_count == 4000


def test_wrong_columns_and_empty_files_through_the_cli(
    worker: WorkerProcess, settings: Settings, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("sku,Critic_Rating\ng0,3\n")
    result = _score(settings, str(wrong), "-o", str(tmp_path / "w.csv"))
    assert result.returncode == 2
    assert "lacks feature column(s): critic_rating (did you mean Critic_Rating?)" in result.stderr
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(COURSE_FEATURES) + "\n")
    result = _score(settings, str(header_only), "-o", str(tmp_path / "h.parquet"))
    assert result.returncode == 0, result.stderr
    assert pq.read_table(tmp_path / "h.parquet").num_rows == 0


def test_two_runs_of_one_input_side_by_side_do_not_stall_each_other(
    worker: WorkerProcess, settings: Settings, tmp_path: Path
) -> None:
    # Chunk ids used to come from the input alone: each run deleted results the other
    # was waiting for, which then waited until its resend (120 s by default).
    src = products(tmp_path / "in.csv", 4000, bad=False)
    flags = ("--chunk-rows", "200", "--in-flight", "2", "--resend-after-s", "600")
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "inferq", "score", str(src), "-o", str(tmp_path / name), *flags],
            env=cli_env(settings), stderr=subprocess.PIPE, text=True,
        )
        for name in ("a.csv", "b.csv")
    ]  # fmt: skip
    for run in runs:
        _, stderr = run.communicate(timeout=90)  # a stall would wait out the 600 s resend
        assert run.returncode == 0, stderr
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
