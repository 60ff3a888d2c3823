#!/usr/bin/env python3
"""docker-compose.yml run for real, as a user runs it: `python3.11 dev.py compose-check`.

Builds each image once (inferq, and Flower's own), starts the stack, then the
`sentinel` profile, and checks what a user relies on; one PASS or FAIL line per check,
with its figure, and exit 1 on any FAIL. Takes several minutes, so it is not part of
CI (tests/e2e/test_compose*.py read the file without Docker). Needs a Docker daemon
and Compose v2 (`docker compose`); DOCKER_HOST and DOCKER_CONFIG are taken from the
environment. The stack runs as project `inferq-check`, with fresh secrets and a free
Flower port, and is removed at the end (`down -v`); the bulk checks write into ./data
and delete what they wrote.

    python3.11 tools/compose_check.py [--vision-replicas N] [--keep]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compose_bulk import BulkChecks
from compose_faults import FaultChecks
from compose_report import Report
from compose_serving import ServingChecks
from compose_stack import DATA, SENTINEL_ENV, CheckFailed, Stack

BASE = ["redis", "regression-worker", "vision-worker", "flower"]
SENTINELS = ["redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"]
START_TIMEOUT_S = 900.0  # model loads on two cores, each container a copy of the image
CHECK_FILES = ("in.csv", "out.csv")


def start(stack: Stack, report: Report, services: list[str], replicas: int, what: str) -> None:
    up = stack.run("up", "-d", "--scale", f"vision-worker={replicas}", timeout_s=START_TIMEOUT_S)
    if up.code != 0:
        report.line(False, f"{what}: docker compose up", up.last_line())
        raise CheckFailed(up.text)
    try:
        seconds = stack.wait_healthy(services, START_TIMEOUT_S)
    except CheckFailed as exc:
        report.line(False, f"{what}: every service healthy", str(exc))
        raise
    count = len([c for c in stack.containers() if c["Service"] in services])
    report.line(True, f"{what}: every service healthy", f"{count} containers in {seconds:.0f} s")


def base_stack(stack: Stack, report: Report, replicas: int) -> None:
    serving = ServingChecks(stack, report)
    report.guard("Compose version", serving.compose_version)
    report.guard("each image built once", serving.one_build)
    start(stack, report, BASE, replicas, "stack")
    report.guard("Flower lists workers that started after it", serving.flower_lists_workers)
    report.guard("Flower's API and its password", serving.flower_password)
    report.guard("a prediction from inside the network", serving.prediction)
    report.guard("a classification from inside the network", serving.classification)
    report.guard("each worker's metrics", serving.metrics)
    bulk = BulkChecks(stack, report)
    report.guard("bulk: the header's commands, verbatim", bulk.header_commands)
    report.guard("bulk: ./data its user cannot write", bulk.wrong_owner)
    report.guard("bulk: a worker stopped mid-run", bulk.stop_mid_run)
    faults = FaultChecks(stack, report)
    report.guard("Redis restarted mid-burst", faults.redis_restart)
    report.guard("Flower's health without its broker", faults.flower_without_broker)


def sentinel_stack(stack: Stack, report: Report, replicas: int) -> None:
    sentinel = Stack(env={**stack.env, **SENTINEL_ENV}, profiles=["sentinel"])
    report.prefix = "sentinel: "
    start(sentinel, report, BASE + SENTINELS, replicas, "stack")
    serving = ServingChecks(sentinel, report)
    report.guard("Flower lists workers that started after it", serving.flower_lists_workers)
    report.guard("a prediction from inside the network", serving.prediction)
    faults = FaultChecks(sentinel, report)
    report.guard("primary killed mid-burst", faults.primary_killed)
    report.prefix = ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vision-replicas", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    taken = [name for name in CHECK_FILES if (DATA / name).exists()]
    if taken:
        sys.exit(f"compose-check writes data/{' and data/'.join(taken)}: move them away first")
    report, stack, started = Report(), Stack(), time.monotonic()
    made_data = not DATA.exists()  # the header's `mkdir -p data` makes it: gone again after
    try:
        base_stack(stack, report, args.vision_replicas)
        sentinel_stack(stack, report, args.vision_replicas)
    except CheckFailed as exc:
        report.line(False, "stopped early", str(exc).splitlines()[-1] if str(exc) else "")
    finally:
        if not args.keep:
            everything = Stack(env=stack.env, profiles=["sentinel", "bulk"])
            down = everything.run("down", "-v", "--remove-orphans", timeout_s=600)
            print(f"docker compose down -v: exit {down.code}", flush=True)
            BulkChecks(stack, report).remove_files()
            if made_data and DATA.exists() and not any(DATA.iterdir()):
                DATA.rmdir()
    minutes = (time.monotonic() - started) / 60
    print(f"{report.passed} passed, {report.failed} failed in {minutes:.1f} min", flush=True)
    sys.exit(1 if report.failed else 0)


if __name__ == "__main__":
    main()
