"""`inferq dead-letters`: list, show, requeue or purge the entries workers could not deliver."""

from __future__ import annotations

import json
import sys

import click
import redis

from inferq.cli.settings import load_settings
from inferq.core.broker import check_broker, redis_client
from inferq.core.exit_codes import BROKER, USAGE
from inferq.ops import dead_letters


def _client(timeout_s: float = 5.0) -> redis.Redis:
    settings = load_settings()
    problem = check_broker(settings, timeout_s)
    if problem is not None:
        click.echo(f"inferq dead-letters: broker unreachable: {problem}", err=True)
        sys.exit(BROKER)
    return redis_client(settings, timeout_s)


@click.group("dead-letters", invoke_without_command=True)
@click.pass_context
def group(ctx: click.Context) -> None:
    """Queue entries workers could not deliver (newest first); without a subcommand: list."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_letters)


@group.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_letters(limit: int, as_json: bool) -> None:
    """How many there are, and the newest ones: index, time, queue, task id, reason."""
    client = _client()
    total = dead_letters.count(client)
    letters = dead_letters.read(client, limit)
    if as_json:
        for letter in letters:
            click.echo(json.dumps(letter.summary()))
        return
    click.echo(f"{total} dead letter(s)")
    for letter in letters:
        f = letter.fields
        click.echo(
            f"[{letter.index}] {f.get('at')} queue={f.get('queue')} task_id={f.get('task_id')} "
            f"bytes={f.get('size_bytes')}: {f.get('reason')}"
        )


@group.command("show")
@click.argument("index", type=click.IntRange(0))
def show(index: int) -> None:
    """One dead letter whole, with its raw entry."""
    letters = dead_letters.read(_client(), index + 1)
    if len(letters) <= index:
        click.echo(f"inferq dead-letters: no entry {index}", err=True)
        sys.exit(USAGE)
    click.echo(dead_letters.show(letters[index]))


@group.command("requeue")
@click.argument("indexes", nargs=-1, type=click.IntRange(0))
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
def requeue(indexes: tuple[int, ...], everything: bool) -> None:
    """Push entries back onto the queue they came from (by index, or --all)."""
    if not indexes and not everything:
        raise click.UsageError("give the indexes to requeue, or --all")
    client = _client()
    letters = dead_letters.read(client)
    chosen = letters if everything else [ltr for ltr in letters if ltr.index in set(indexes)]
    done = dead_letters.requeue(client, chosen)
    click.echo(f"requeued {done} of {len(chosen)}")


@group.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask.")
def purge(yes: bool) -> None:
    """Delete every dead letter."""
    if not yes:
        click.confirm("delete every dead letter?", abort=True)
    click.echo(f"deleted {dead_letters.purge(_client())} dead letter(s)")


COMMANDS: list[click.Command] = [group]
