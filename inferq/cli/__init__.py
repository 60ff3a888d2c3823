"""The `inferq` command line. Commands stay thin: the work lives in the packages below.

One module per group of commands: models (offline tools), serve (workers, Redis,
health), jobs (predict, classify), bulk (score, score-images), dead_letters, bench.
"""

from __future__ import annotations

import os

import click

from inferq.cli import bench, bulk, dead_letters, jobs, models, serve

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inferq")
def main() -> None:
    """inferq: batching inference workers on Celery and Redis."""


for module in (models, serve, jobs, bulk, dead_letters):
    for command in module.COMMANDS:
        main.add_command(command)
main.add_command(bench.bench)
