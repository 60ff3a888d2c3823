"""Names and commands every kind of test uses: the session's queues and limits, the
`inferq` command as a user runs it, and the published JSON Schemas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inferq.core.settings import Settings

E2E_QUEUE = "test-regression"
E2E_MAX_WAIT_MS = 50.0
E2E_MAX_BATCH = 16
VISION_QUEUE = "test-vision"
ROOT = Path(__file__).resolve().parents[2]  # the repository
SCHEMA_DIR = ROOT / "docs" / "schema"


def schema(name: str) -> dict[str, Any]:
    """A published JSON Schema (docs/schema/NAME.schema.json)."""
    loaded: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    return loaded


def cli_env(settings: Settings) -> dict[str, str]:
    """Environment for a CLI subprocess talking to the session's worker."""
    return {
        **os.environ,
        "INFERQ_REDIS_URL": settings.broker_url,
        "INFERQ_REGRESSION_QUEUE": settings.regression_queue,
        "INFERQ_REGRESSOR_PATH": str(settings.regressor_path),
    }


def run_inferq(
    *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m inferq ARGS` as a user would run it; the caller checks the exit code."""
    return subprocess.run(
        [sys.executable, "-m", "inferq", *args],
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
