"""`inferq bench scale` end to end, at sizes small enough for the suite (~30 s)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.harness import run_inferq

pytestmark = pytest.mark.e2e

JOBS, ROWS = 200, 20_000


def test_bench_scale_reports_both_sides_with_two_worker_processes(regressor_path: Path) -> None:
    # No INFERQ_REDIS_URL: the bench starts (and stops) its own redis-server.
    env = {**os.environ, "INFERQ_REGRESSOR_PATH": str(regressor_path)}
    argv = ["bench", "scale", "--jobs", str(JOBS), "--rows", str(ROWS), "--rounds", "1"]
    # Chunks of 5,000 rows: four chunks, so the 2-worker bulk round has work for both.
    argv += ["--chunk-rows", "5000", "--json"]
    proc = run_inferq(*argv, env=env, timeout_s=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    for key in ("stream_1", "stream_2", "bulk_1", "bulk_2"):
        assert result[key] > 0, key
    assert result["stream_ratio"] == pytest.approx(result["stream_2"] / result["stream_1"], 1e-2)
    assert result["bulk_ratio"] == pytest.approx(result["bulk_2"] / result["bulk_1"], 1e-2)
    # Every job answered (run_phase waits for all N results) and none failed.
    assert result["failed"] == 0
    assert result["sizes"]["jobs"] == JOBS
    assert result["bulk_rows_scored"] == ROWS
    assert result["redis"] == "own redis-server"
    two = result["cpu_ms_per_job"]["stream_2"]
    # Two separate processes, and both did work in the 2-worker round.
    assert len(two["per_worker"]) == 2
    assert all(ms > 0 for ms in two["per_worker"])
    for party in ("workers", "client", "redis"):
        assert two[party] > 0, party
    assert set(result["cpu_us_per_row"]) == {"bulk_1", "bulk_2"}
