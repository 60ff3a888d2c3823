"""The tree's promises that import-linter cannot see: what a serving worker process
actually loads, and tasks that cannot drift from the published contract."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from celery import Celery

from inferq.core.contract import PredictPayload
from worker.celeryapp import tasks


def test_a_serving_worker_loads_no_benchmark_drill_tool_or_cli_code() -> None:
    code = (
        "import sys, worker\n"
        "worker.app.loader.import_default_modules()\n"
        "bad = ('inferq.bench', 'inferq.tools', 'inferq.cli', 'inferq.ops', 'worker.drills')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(bad))\n"
        "assert not loaded, loaded\n"
        "assert 'inferq.bench.noop' not in worker.app.tasks\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_task_whose_signature_disagrees_with_its_payload_model_is_refused() -> None:
    def predict(self: Any, row: Any) -> None:  # "row", where the contract says "rows"
        return None

    app = Celery("test-layers", set_as_current=False)
    with pytest.raises(TypeError, match="payload model"):
        tasks._register(app, "inferq.test", PredictPayload, predict)
