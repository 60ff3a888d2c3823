"""`inferq bench scale` end to end, small: 1 and 2 simulated hosts, one round (~2 min).

It needs network namespaces and a cgroup CPU cap (root, iproute2): without them the
test is skipped with the reason, and the command exits 2 saying why (checked too).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from inferq.bench.hosts import why_no_hosts
from inferq.core import exit_codes
from tests.support.harness import run_inferq

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

HOST_CPU = 0.25
# The quota is enforced per 100 ms period; over a short round a host may run a little
# past it (the last period's slice), never far.
CAP_SLACK = 1.3
WORKLOADS = ("stream", "bulk", "vision", "celery_noop")


def test_bench_scale_measures_every_workload_on_capped_hosts(
    regressor_path: Path, models_dir: Path, tmp_path: Path
) -> None:
    reason = why_no_hosts()
    if reason is not None:
        pytest.skip(f"bench scale needs simulated hosts: {reason}")
    env = {
        **os.environ,
        "INFERQ_REGRESSOR_PATH": str(regressor_path),
        "INFERQ_MODELS_DIR": str(models_dir),
    }
    out = tmp_path / "scale.json"
    argv = ["bench", "scale", "--hosts", "1,2", "--host-cpu", str(HOST_CPU), "--rounds", "1"]
    argv += ["--jobs-per-host", "300", "--images-per-host", "48", "--rows-per-host", "200000"]
    argv += ["--trace", str(tmp_path / "trace")]
    proc = run_inferq(*argv, "--json", "--out", str(out), env=env, timeout_s=450)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result == json.loads(out.read_text())
    assert result["failed"] == 0
    for workload in WORKLOADS:
        rates = result[workload]
        assert set(rates) == {"1", "2"} and min(rates.values()) > 0, workload
        efficiency = result["efficiency"][workload]
        assert efficiency["2"] == pytest.approx(rates["2"] / (2 * rates["1"]), abs=2e-3)
        two = result["cpu"][workload]["2"]
        # Both hosts worked, and neither ran past its cap: the cgroup quota holds.
        assert len(two["hosts_cores"]) == 2 and min(two["hosts_cores"]) > 0, workload
        assert max(two["hosts_cores"]) <= HOST_CPU * CAP_SLACK, (workload, two)
        assert two["hosts_load"] == [round(c / HOST_CPU, 3) for c in two["hosts_cores"]]
        assert all(0 <= t <= 1 for t in two["throttled_periods"]), two
        assert two["saturated"] in {"hosts", "producers", "redis", "machine"}
        assert two["producers_cores"] > 0 and two["redis_cores"] > 0
        assert two["depth"]["samples"] > 0, two  # the queue was sampled in the window
        # A curve above linear is never reported as a result: the JSON says it failed.
        status = result["status"][workload]
        assert status == "failed" or max(efficiency.values()) <= 1.0, result
        assert (status == "failed") == bool(result["failures"].get(workload)), result
    # Every round's samples and answers were kept where --trace asked.
    assert len(list((tmp_path / "trace").glob("*.json"))) == 2 * len(WORKLOADS) + len(WORKLOADS)
    assert result["machine"]["cgroup"] in {"v1", "v2"}
    assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    assert "| stream | 2 |" in out.with_suffix(".md").read_text()
    # Every workload's workers ran with the shipped defaults, or the override is recorded
    # (vision: two batches of images per host) and printed beside the table.
    settings = result["settings"]
    assert {w for w in WORKLOADS if settings[w]["defaults"]} == {"stream", "bulk", "celery_noop"}
    assert settings["vision"]["overrides"] == {"INFERQ_JOB_SLOTS": "32"}
    assert "bulk workers: defaults" in out.with_suffix(".md").read_text()


def test_bench_scale_says_why_and_exits_2_where_hosts_cannot_be_made(
    regressor_path: Path, models_dir: Path, tmp_path: Path
) -> None:
    # No `ip` on PATH: no namespace can be made, whatever the privileges. (The models
    # are there: a missing one is refused first, tests/e2e/test_cli.py.)
    env = {
        **os.environ,
        "PATH": str(tmp_path),
        "INFERQ_REGRESSOR_PATH": str(regressor_path),
        "INFERQ_MODELS_DIR": str(models_dir),
    }
    proc = run_inferq("bench", "scale", "--out", str(tmp_path / "s.json"), env=env, timeout_s=60)
    assert proc.returncode == exit_codes.USAGE
    assert "cannot make simulated hosts here" in proc.stderr
    assert "iproute2" in proc.stderr
    assert not (tmp_path / "s.json").exists()
