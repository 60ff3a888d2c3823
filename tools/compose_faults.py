"""The fault checks of tools/compose_check.py: Redis restarted mid-burst, Flower's health
with its broker gone, and (profile sentinel) the primary killed mid-burst."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from compose_report import Report
from compose_serving import WORKERS, ServingChecks
from compose_stack import Result, Stack, wait_for

BURST = Path(__file__).with_name("compose_burst.py")
JOBS, MARK = 3000, 500
BURST_TIMEOUT_S = 600.0
HEALTH_TIMEOUT_S = 600.0
FLOWER_TIMEOUT_S = 150.0
PING = (
    "from inferq.core.settings import Settings; from producer.client import Client; "
    "print(len(Client(Settings.load()).app.control.inspect(timeout=5).ping() or {}))"
)  # three failed checks 15 s apart, each up to 10 s, and the first


@dataclass
class Burst:
    sent: int = 0
    answered: int = 0
    failed: int = 0
    retries: int = 0
    seconds: float = 0.0
    action: Result | None = None
    last: str = ""

    @property
    def whole(self) -> bool:
        return self.sent == JOBS and self.answered == JOBS and self.failed == 0

    def figure(self) -> str:
        return (
            f"{self.answered} of {self.sent or JOBS} jobs answered, {self.failed} failed, "
            f"{self.retries} sends retried, {self.seconds:.1f} s"
            + ("" if self.sent else f" ({self.last})")
        )


class FaultChecks:
    def __init__(self, stack: Stack, report: Report) -> None:
        self.stack, self.report = stack, report

    def burst(self, action: Callable[[], Result]) -> Burst:
        """JOBS one-row jobs from inside the regression worker's container; ACTION once
        MARK of them are sent."""
        process = self.stack.popen(
            "exec", "-T", "regression-worker", "python", "-", str(JOBS), str(MARK)
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(BURST.read_text())
        process.stdin.close()
        result = Burst()
        deadline = time.monotonic() + BURST_TIMEOUT_S
        for line in process.stdout:
            result.last = line.strip() or result.last
            if line.startswith("MARK"):
                result.action = action()
            elif line.startswith("RESULT"):
                numbers = line.split()[1:]
                result.sent, result.answered, result.failed, result.retries = map(int, numbers[:4])
                result.seconds = float(numbers[4])
            if time.monotonic() > deadline:
                process.kill()
                break
        process.wait(timeout=60)
        if result.sent == 0 and process.stderr is not None:
            result.last = (process.stderr.read().strip().splitlines() or [result.last])[-1]
        return result

    def redis_restart(self) -> None:
        burst = self.burst(lambda: self.stack.run("restart", "redis", timeout_s=120))
        restarted = burst.action is not None and burst.action.code == 0
        took = f"{burst.action.seconds:.1f} s" if burst.action else "never"
        ok = restarted and burst.whole
        figure = f"Redis restarted after {MARK} sends (took {took}); {burst.figure()}"
        self.report.line(ok, "Redis restarted mid-burst", figure)
        self.stack.wait_healthy(["redis", *WORKERS], HEALTH_TIMEOUT_S)

    def flower_health(self) -> str:
        container = self.stack.running("flower")[0]
        return self.stack.inspect(container, "{{.State.Health.Status}}")

    def flower_without_broker(self) -> None:
        self.stack.run("stop", "redis", timeout_s=120)
        stopped = time.monotonic()
        down = wait_for(lambda: self.flower_health() == "unhealthy", FLOWER_TIMEOUT_S, 2)
        down_s = time.monotonic() - stopped
        self.stack.run("start", "redis", timeout_s=120)
        started = time.monotonic()
        up = wait_for(lambda: self.flower_health() == "healthy", FLOWER_TIMEOUT_S, 2)
        up_s = time.monotonic() - started
        figure = (
            f"{'unhealthy' if down else 'still ' + self.flower_health()} {down_s:.0f} s after "
            f"Redis stopped; {'healthy' if up else self.flower_health()} {up_s:.0f} s after it "
            "started again"
        )
        self.report.line(down and up, "Flower's health without its broker", figure)
        self.stack.wait_healthy(["redis", *WORKERS, "flower"], HEALTH_TIMEOUT_S)

    def pinged(self) -> str:
        """How many workers answer Celery's broadcast `inspect ping` (the remote control
        Flower relies on), asked from inside a worker's container with inferq's client."""
        done = self.stack.exec("regression-worker", "python", "-c", PING)
        return done.out.strip() if done.code == 0 else f"? ({done.last_line()})"

    def master(self) -> str:
        asked = self.stack.exec(
            "sentinel-1",
            "redis-cli",
            "-p",
            "26379",
            "sentinel",
            "get-master-addr-by-name",
            "inferq",
        )
        return asked.out.split("\n")[0].strip()

    def primary_killed(self) -> None:
        replica = self.stack.running("redis-replica")[0]
        replica_ip = self.stack.inspect(
            replica, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        )
        before = self.master()
        killed: list[float] = []

        def kill() -> Result:
            killed.append(time.monotonic())
            return self.stack.run("kill", "redis", timeout_s=60)

        burst = self.burst(kill)
        promoted = wait_for(lambda: self.master() in (replica_ip, "redis-replica"), 120, 1)
        now = self.master()
        figure = (
            f"primary ({before}) killed after {MARK} sends; Sentinels name {now} "
            f"(redis-replica is {replica_ip}); {burst.figure()}"
        )
        self.report.line(promoted and burst.whole, "primary killed mid-burst", figure)
        self.flower_after_failover(killed[0] if killed else time.monotonic())

    def flower_after_failover(self, killed_at: float) -> None:
        """Flower on the Sentinels follows the new primary: healthy, and it lists workers."""
        serving = ServingChecks(self.stack, self.report)

        def follows() -> bool:
            code, workers = serving.flower("/api/workers?refresh=1")
            return self.flower_health() == "healthy" and code == 200 and bool(workers)

        ok = wait_for(follows, FLOWER_TIMEOUT_S, 3)
        code, workers = serving.flower("/api/workers?refresh=1")
        count = len(workers) if isinstance(workers, dict) else 0
        figure = (
            f"{self.flower_health()}, /api/workers HTTP {code} with {count} workers, "
            f"{time.monotonic() - killed_at:.0f} s after the kill; Celery's inspect ping "
            f"from a worker's container: {self.pinged()} workers answer"
        )
        self.report.line(ok, "Flower after the failover", figure)
