"""A short soak: mixed traffic while every kind of fault strikes once or more.

`inferq bench soak` as an operator runs it, for a little over a minute: the regression
worker killed and paused, Redis restarted and stalled, garbage pushed onto the
queues, the regressor rolled out half-way. Every answer must be right, none lost,
every bulk output of one model version (both versions seen), no worker stopped but by
a fault, the garbage in the dead letters, and the command exits 0.
The 20-minute run is in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from inferq.core.settings import Settings
from tests.support.harness import run_inferq

pytestmark = pytest.mark.e2e


def test_a_short_soak_loses_nothing_and_answers_right(
    regressor_path: Path, models_dir: Path, tmp_path: Path
) -> None:
    settings = Settings.load({}, regressor_path=regressor_path, models_dir=models_dir)
    env = {**os.environ, **settings.to_env()}
    report_path = tmp_path / "soak.json"
    args = ("--minutes", "1.2", "--fault-every-s", "7", "--bulk-rows", "5000")
    proc = run_inferq("bench", "soak", *args, "--out", str(report_path), env=env, timeout_s=900)
    report = json.loads(report_path.read_text())
    assert proc.returncode == 0, proc.stdout[-3000:]
    kinds = {f["fault"] for f in report["faults"]}
    assert kinds == {"kill_worker", "restart_redis", "push_garbage", "stall_redis",
                     "pause_worker", "roll_out"}  # fmt: skip
    for traffic in ("stream", "images", "bulk"):
        tally = report[traffic]
        assert tally["wrong"] == tally["lost"] == 0 and tally["answered"] > 0, tally
    assert len(report["bulk"]["versions"]) == 2, report["bulk"]
    # Garbage went to the dead letters, and no worker stopped without a fault stopping it.
    assert report["worker_exits"] == [], report["worker_exits"]
    assert sum(report["dead_letters"].values()) > 0
