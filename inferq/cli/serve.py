"""`inferq worker`, `redis`, `health`, `queues` and `demo`: running and watching workers."""

from __future__ import annotations

import sys

import click

from inferq.cli.settings import UsageProblem, load_settings


@click.command()
@click.option("--queues", default="regression", show_default=True, help="regression[,vision]")
@click.option(
    "--concurrency", default=1, show_default=True, help="Worker processes (one model copy each)."
)
@click.option("--max-batch-size", type=int, help="Rows per forward pass (INFERQ_MAX_BATCH_SIZE).")
@click.option(
    "--max-wait-ms", type=float, help="Batch fill wait from the first row (INFERQ_MAX_WAIT_MS)."
)
@click.option("--job-slots", type=int, help="Jobs held at once per process (INFERQ_JOB_SLOTS).")
@click.option("--hostname", "-n", help="Celery node name (default: distinct per process).")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def worker(
    queues: str,
    concurrency: int,
    max_batch_size: int | None,
    max_wait_ms: float | None,
    job_slots: int | None,
    hostname: str | None,
    loglevel: str,
) -> None:
    """Run batching workers (same as `celery -A worker worker -Q ...` with checks first)."""
    from inferq.ops.worker_command import run_worker

    # Options are settings: they reach the worker processes as settings, never by
    # rewriting this process's environment.
    settings = load_settings(
        max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, job_slots=job_slots
    )
    sys.exit(run_worker(settings, queues.split(","), concurrency, hostname, loglevel))


@click.command()
@click.option("--queues", default="regression", show_default=True, help="regression[,vision]")
@click.option(
    "--timeout-s",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="How long to wait for the workers' answers.",
)
def health(queues: str, timeout_s: float) -> None:
    """Exit 0 when Redis answers and each queue has a worker with its model loaded.

    Otherwise one line says why: exit 4 broker unreachable, 1 no worker or no model, 2 usage.
    """
    from inferq.ops.health import run

    sys.exit(run(load_settings(), queues.split(","), timeout_s))


@click.command()
@click.option("--queues", default="regression,vision", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@click.option("--timeout-s", default=2.0, show_default=True, type=click.FloatRange(min=0.1))
def queues(queues: str, as_json: bool, timeout_s: float) -> None:
    """Jobs waiting per queue, and jobs held by workers: what an autoscaler scales on."""
    from inferq.ops.queues import run

    sys.exit(run(load_settings(), queues.split(","), as_json, timeout_s))


@click.command()
@click.option("--port", type=int, default=6379, show_default=True)
@click.option("--appendonly", is_flag=True, help="Persist with AOF.")
def redis(port: int, appendonly: bool) -> None:
    """Run the bundled redis-server in the foreground (for machines without Redis)."""
    from inferq.ops.redis_server import RedisServer, RedisServerError

    try:
        # A signal during the start (it waits for the server's PING) must stop it too.
        with RedisServer(port, appendonly=appendonly) as server:
            click.echo(f"INFERQ_REDIS_URL={server.url}  (Ctrl-C to stop)")
            assert server.process is not None
            server.process.wait()
    except KeyboardInterrupt:
        pass
    except RedisServerError as exc:  # the port is taken, or the server would not start
        raise UsageProblem(str(exc)) from None


@click.command()
def demo() -> None:
    """Start Redis (if INFERQ_REDIS_URL is unset) and a worker, predict a few games, stop."""
    from inferq.tools.demo import run_demo

    sys.exit(run_demo(load_settings()))


COMMANDS: list[click.Command] = [worker, health, queues, redis, demo]
