"""The `inferq` command line. Commands stay thin: the work lives in the packages below.

One module per group of commands: models (offline tools), serve (workers, Redis,
health), jobs (predict, classify), bulk (score, score-images), dead_letters, bench.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

import click

from inferq.cli import bench, bulk, dead_letters, jobs, models, serve

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inferq")
def main() -> None:
    """inferq: batching inference workers on Celery and Redis."""
    # SIGTERM (and SIGHUP: the terminal went away) end a command as Ctrl-C does, so what
    # it started (a redis-server, worker processes) is stopped by the same `with` blocks,
    # and a bulk run keeps its parts. A script's background job ignores SIGINT, so this
    # is how `kill` reaches it. (`inferq worker` installs Celery's own: a warm shutdown.)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


for module in (models, serve, jobs, bulk, dead_letters):
    for command in module.COMMANDS:
        main.add_command(command)
main.add_command(bench.bench)
