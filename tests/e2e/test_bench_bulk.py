"""`inferq bench bulk` end to end, small: its worker runs the shipped defaults, and the
JSON says so beside the figures, with lone jobs' latency and compose's line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.harness import run_inferq

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


def test_bench_bulk_runs_the_defaults_and_records_the_settings(
    regressor_path: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "INFERQ_REGRESSOR_PATH": str(regressor_path)}
    env = {k: v for k, v in env.items() if k != "INFERQ_MAX_BATCH_SIZE"}
    out = tmp_path / "bulk.json"
    argv = ["bench", "bulk", "--rows", "40000", "--chunk-rows", "4096", "--json", "--out", str(out)]
    proc = run_inferq(*argv, env=env, timeout_s=360)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result == json.loads(out.read_text())
    # The same model on other batch shapes: float32 round-off, ~0.03 USD a unit in the
    # last place at these outputs' scale (one output unit is ~270,000 USD).
    assert result["failed_rows"] == 0 and result["max_abs_diff_usd_queue_vs_in_process"] < 1.0
    settings = result["settings"]
    assert settings["defaults"] is True and settings["overrides"] == {}
    assert settings["effective"]["max_batch_size"] == 64
    assert settings["effective"]["bulk_batch_size"] == 8192
    assert result["queue_rows_per_s"] > 0 and result["parquet_ratio"] > 0
    for fmt in ("csv", "parquet"):  # the CPU each path cost, and the cores' ceiling
        budget = result["cpu"][fmt]
        per = budget["per_1m_rows_s"]
        assert per["producer"] > 0 and per["worker"] > 0 and per["in_process"] > 0
        assert per["queue_total"] >= per["producer"] + per["worker"]
        assert 0 < budget["cores_busy"]["queue"] <= budget["cores"] + 0.5
        assert budget["ceiling_ratio"] > 0
    idle = result["stream_during_bulk"]["idle"]
    assert idle["jobs"] == 40 and idle["p50_ms"] > 0
    assert set(result["stream_during_bulk"]["during"]) >= {"jobs", "p50_ms", "p95_ms"}
    # The compose regression worker keeps the defaults, so its figures are these.
    assert result["compose"] == {
        "service": "regression-worker",
        "known": True,
        "same_as_defaults": True,
    }


def test_an_override_is_recorded_beside_the_figures(regressor_path: Path) -> None:
    env = {**os.environ, "INFERQ_REGRESSOR_PATH": str(regressor_path)}
    argv = ["bench", "bulk", "--rows", "5000", "--max-batch", "128", "--no-compose"]
    proc = run_inferq(*argv, env=env, timeout_s=360)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "worker: INFERQ_MAX_BATCH_SIZE=128" in proc.stdout
    assert proc.stdout.count("CPU s per 1M rows: producer") == 2  # CSV and Parquet
    assert "compose: not run (--no-compose)" in proc.stdout
