"""docker-compose.yml driven as a user drives it, for tools/compose_check.py: `docker
compose` commands with one environment, the services' state, and waits that end.

Standard library only: it runs before anything is installed (`python3.11 dev.py
compose-check`), beside a Docker daemon and the Compose v2 plugin.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
COMPOSE = ROOT / "docker-compose.yml"
# Its own project name: a stack the user runs (`inferq`, the file's name) is left alone.
PROJECT = "inferq-check"
SENTINEL_ENV = {
    "REDIS_SCHEME": "sentinel",
    "SENTINEL_MASTER": "inferq",
    "REDIS_HOSTS": "sentinel-1:26379;sentinel://sentinel-2:26379;sentinel://sentinel-3:26379",
}


class CheckFailed(Exception):
    """A step the later checks cannot go on without failed (the stack did not start)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def compose_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables the compose file asks for, fresh secrets, this user's ids."""
    env = {key: value for key, value in os.environ.items() if key not in SENTINEL_ENV}
    env.update(
        COMPOSE_PROJECT_NAME=PROJECT,
        REDIS_PASSWORD=secrets.token_hex(16),
        FLOWER_BASIC_AUTH=f"ops:{secrets.token_hex(8)}",
        FLOWER_PORT=str(free_port()),
        DATA_UID=str(os.getuid()),
        DATA_GID=str(os.getgid()),
    )
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return (self.out + self.err).strip()

    def last_line(self) -> str:
        lines = self.text.splitlines()
        return lines[-1] if lines else ""


@dataclass
class Stack:
    env: dict[str, str] = field(default_factory=compose_env)
    profiles: list[str] = field(default_factory=list)

    def command(self, *args: str) -> list[str]:
        flags = [item for profile in self.profiles for item in ("--profile", profile)]
        return ["docker", "compose", *flags, *args]

    def run(self, *args: str, timeout_s: float = 600, stdin: str | None = None) -> Result:
        return self.execute(self.command(*args), timeout_s, stdin)

    def shell(self, script: str, timeout_s: float = 600) -> Result:
        """Lines of the compose file's header, run by sh as a user would paste them."""
        return self.execute(["sh", "-c", script], timeout_s)

    def docker(self, *args: str, timeout_s: float = 300) -> Result:
        """A plain `docker` command, for what compose has no verb for (one container)."""
        return self.execute(["docker", *args], timeout_s)

    def execute(self, argv: list[str], timeout_s: float, stdin: str | None = None) -> Result:
        started = time.monotonic()
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr, time.monotonic() - started)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def containers(self) -> list[dict[str, str]]:
        """`docker compose ps --all` as dicts (Name, Service, State, Health, ExitCode)."""
        listed = self.run("ps", "--all", "--format", "json", timeout_s=60)
        if listed.code != 0:
            raise CheckFailed(f"docker compose ps: {listed.text}")
        text = listed.out.strip()
        if text.startswith("["):  # Compose before 2.21 printed one array
            found: list[dict[str, str]] = json.loads(text)
            return found
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def running(self, service: str) -> list[str]:
        return [
            c["Name"]
            for c in self.containers()
            if c["Service"] == service and c["State"] == "running"
        ]

    def exec(self, service: str, *args: str, stdin: str | None = None) -> Result:
        return self.run("exec", "-T", service, *args, stdin=stdin, timeout_s=300)

    def unhealthy(self, services: Sequence[str]) -> dict[str, str]:
        """Each container of SERVICES that is not running and healthy, with its state."""
        seen = {c["Name"]: c for c in self.containers() if c["Service"] in services}
        missing = {
            s: "no container" for s in services if s not in {c["Service"] for c in seen.values()}
        }
        bad = {
            name: f"{c['State']}/{c.get('Health') or 'no health check'}"
            for name, c in seen.items()
            if c["State"] != "running" or c.get("Health") != "healthy"
        }
        return {**missing, **bad}

    def wait_healthy(self, services: Sequence[str], timeout_s: float) -> float:
        """Seconds until every container of SERVICES is healthy; CheckFailed after TIMEOUT_S."""
        started = time.monotonic()
        left = self.unhealthy(services)
        while left:
            if time.monotonic() - started > timeout_s:
                raise CheckFailed(f"not healthy after {timeout_s:.0f} s: {left}")
            time.sleep(3)
            left = self.unhealthy(services)
        return time.monotonic() - started

    def inspect(self, container: str, template: str) -> str:
        return self.docker("inspect", "--format", template, container).out.strip()


def wait_for(condition: Callable[[], bool], timeout_s: float, step_s: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return condition()


def csv_rows(path: Path) -> tuple[int, int]:
    """(data rows, rows with a non-empty `error` column) of a CSV that inferq score wrote."""
    rows = errors = 0
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        error_at = header.index("error") if "error" in header else None
        for row in reader:
            rows += 1
            if error_at is not None and row[error_at]:
                errors += 1
    return rows, errors
