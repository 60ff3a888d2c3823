#!/usr/bin/env python3
"""Set-up and the two quick-start commands, with nothing but Python 3.11 assumed.

    python3.11 dev.py demo    # venv, install, build models, Redis, worker, predictions
    python3.11 dev.py test    # venv, install, ruff, mypy, import layers, the test suite
    python3.11 dev.py bench   # venv, install, build models, `inferq bench stream`
    python3.11 dev.py fuzz N  # the queue fuzzer against a live worker, N examples
    python3.11 dev.py compose-check  # docker-compose.yml run for real (minutes; not in CI)

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".inferq-installed"
INPUTS = [ROOT / "pyproject.toml", ROOT / "requirements.lock"]


def run(*args: str | Path) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    code = subprocess.call([str(a) for a in args], cwd=ROOT)
    if code != 0:
        sys.exit(code)


def ensure_venv() -> None:
    if sys.version_info[:2] not in ((3, 11), (3, 12)):
        sys.exit(f"inferq needs Python 3.11 or 3.12, not {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    newest_input = max(p.stat().st_mtime for p in INPUTS)
    if STAMP.exists() and STAMP.stat().st_mtime >= newest_input:
        return
    # Pinned versions (requirements.lock) as constraints: every machine runs what CI ran.
    pip_install("-e", ".[dev]")
    # celery-batches, the stream benchmark's anchor, at requirements.lock's pin: without
    # its declared dependencies (celery<5.7), which the pinned Celery 5.7.0 replaces.
    pip_install("--no-deps", "celery-batches")
    STAMP.touch()


def pip_install(*args: str) -> None:
    quiet = ("--quiet", "--disable-pip-version-check")
    run(BIN / "python", "-m", "pip", "install", *quiet, "-c", ROOT / "requirements.lock", *args)


def build_models() -> None:
    run(BIN / "inferq", "models", "build")


def main(argv: list[str]) -> None:
    command = argv[0] if argv else "help"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if command == "demo":
        ensure_venv()
        build_models()
        run(BIN / "inferq", "demo")
    elif command == "test":
        ensure_venv()
        run(BIN / "ruff", "check", ".")
        run(BIN / "mypy")
        # tools/ (the compose check) is scripts, not a package: checked on its own.
        run(BIN / "mypy", "tools")
        # The one-way layers of pyproject.toml's [tool.importlinter] contracts.
        run(BIN / "lint-imports")
        # pytest exits 5 when it collected no test: that is a failure here too.
        run(BIN / "pytest", *argv[1:])
    elif command == "bench":
        ensure_venv()
        build_models()
        run(BIN / "inferq", "bench", "stream", "--json", "--out", "bench-results/stream.json")
    elif command == "fuzz":
        ensure_venv()
        # The suite runs a few examples; this runs as many as asked (default 2000).
        os.environ["FUZZ_EXAMPLES"] = argv[1] if len(argv) > 1 else "2000"
        run(BIN / "pytest", "-q", "tests/faults/test_fuzz_queue.py")
    elif command == "compose-check":
        # Docker and Compose v2 do the work; the check itself needs no venv (standard library).
        run(sys.executable, ROOT / "tools" / "compose_check.py", *argv[1:])
    elif command == "install":
        ensure_venv()
    else:
        print(__doc__)
        sys.exit(0 if command in ("help", "-h", "--help") else 2)


if __name__ == "__main__":
    main(sys.argv[1:])
