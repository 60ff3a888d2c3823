"""`inferq bench ...`: self-contained benchmarks (they start and stop what they measure).

Attached to the main group by `inferq.cli`; this module does not import that one,
so either can be imported first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from inferq.bench.anchors import CLIENTS
from inferq.bench.scale_sizes import DEFAULT as _SCALE
from inferq.bench.scale_sizes import NOOP_JOBS, STREAM_JOBS
from inferq.cli.settings import UsageProblem, load_settings
from inferq.core import exit_codes
from inferq.core.settings import Settings
from inferq.errors import InferqError


def _settings_with_models(*kinds: str) -> Settings:
    """The settings, once the model files the benchmark serves are known to be there: a
    missing file is one line (it names `inferq models build`), not a traceback."""
    from worker.loading.registry import check_files  # a worker's import: only when run

    settings = load_settings()
    try:
        check_files(settings, set(kinds))
    except InferqError as exc:
        raise UsageProblem(exc.message) from None
    return settings


def _emit(
    result: dict[str, object], as_json: bool, out: Path | None, lines: str | None = None
) -> None:
    """The JSON (printed with ``as_json``, written to ``out``), else ``lines`` if given."""
    text = json.dumps(result, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    if as_json:
        click.echo(text)
    elif lines is not None:
        click.echo(lines)
    elif "units" not in result:  # bench scale prints its table instead
        click.echo("\n".join(f"{k}: {v}" for k, v in result.items()))


@click.group()
def bench() -> None:
    """Benchmarks: self-contained, they start and stop what they measure."""


@bench.command("vision")
@click.option("--imagenet-images", default=400, show_default=True, type=click.IntRange(1))
@click.option("--phone-images", default=48, show_default=True, type=click.IntRange(1))
@click.option(
    "--compose/--no-compose",
    default=True,
    show_default=True,
    help="Run the worker phases again with docker-compose.yml's vision worker settings "
    "where they differ from the defaults.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the JSON here.")
def bench_vision(
    imagenet_images: int, phone_images: int, compose: bool, as_json: bool, out: Path | None
) -> None:
    """ImageNet-size and phone-size JPEGs through one vision worker with the shipped
    defaults (bulk and stream) vs the in-process script a user would write, and the raw
    model."""
    from inferq.bench.vision import run_vision_bench, table

    result = run_vision_bench(
        _settings_with_models("classifier"),
        imagenet=imagenet_images,
        phone=phone_images,
        compose=compose,
    )
    _emit(result, as_json, out, None if as_json else table(result))


@bench.command("bulk")
@click.option("--rows", default=1_000_000, show_default=True)
@click.option(
    "--chunk-rows",
    type=click.IntRange(1),
    help="Rows per chunk; default: `inferq score`'s own (recorded in the JSON).",
)
@click.option("--in-flight", default=4, show_default=True)
@click.option(
    "--max-batch",
    type=click.IntRange(1),
    help="The worker's max batch size (INFERQ_MAX_BATCH_SIZE); default: the shipped one. "
    "An override is recorded beside the figures.",
)
@click.option(
    "--bulk-batch",
    type=click.IntRange(1),
    help="The worker's bulk pass size (INFERQ_BULK_BATCH_SIZE); default: the shipped one. "
    "An override is recorded beside the figures.",
)
@click.option(
    "--compose/--no-compose",
    default=True,
    show_default=True,
    help="Run again with docker-compose.yml's regression worker settings where they differ.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the JSON here.")
def bench_bulk(
    rows: int,
    chunk_rows: int | None,
    in_flight: int,
    max_batch: int | None,
    bulk_batch: int | None,
    compose: bool,
    as_json: bool,
    out: Path | None,
) -> None:
    """A generated products file scored through one worker with the shipped defaults vs
    in one process, and lone stream jobs' latency during the run."""
    from inferq.bench.bulk import run_bulk_bench
    from inferq.bench.bulk_report import table

    result = run_bulk_bench(
        _settings_with_models("regressor"),
        rows=rows,
        chunk_rows=chunk_rows,
        in_flight=in_flight,
        max_batch=max_batch,
        bulk_batch=bulk_batch,
        compose=compose,
    )
    _emit(result, as_json, out, None if as_json else table(result))


@bench.command("stream")
@click.option("--jobs", default=2000, show_default=True)
@click.option(
    "--seed-jobs", default=200, show_default=True, help="Jobs for the slow seed baseline."
)
@click.option("--rounds", default=3, show_default=True, help="Alternating (a)/(b) rounds; medians.")
@click.option(
    "--client",
    type=click.Choice(CLIENTS),
    default="celery",
    show_default=True,
    help="Who sends inferq's jobs (the anchors always get a plain Celery client).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the JSON here.")
def bench_stream(
    jobs: int, seed_jobs: int, rounds: int, client: str, as_json: bool, out: Path | None
) -> None:
    """One-row jobs through a default worker, against celery-batches and a solo no-op."""
    from inferq.bench.stream import run_stream_bench

    result = run_stream_bench(
        _settings_with_models("regressor"),
        jobs=jobs,
        seed_jobs=seed_jobs,
        rounds=rounds,
        client=client,
    )
    _emit(result, as_json, out)


@bench.command("scale")
@click.option("--hosts", "host_counts", default="1,2,4", show_default=True, help="Host counts.")
@click.option(
    "--host-cpu",
    default=_SCALE.host_cpu,
    show_default=True,
    type=click.FloatRange(0.01),
    help="Each host's CPU cap, in cores.",
)
@click.option(
    "--producers",
    default=_SCALE.producers,
    show_default=True,
    type=click.IntRange(1),
    help="Producer processes (bulk: `inferq score` runs), outside the hosts.",
)
@click.option(
    "--jobs-per-host",
    type=click.IntRange(1),
    help=f"Stream and no-op jobs per host.  [default: {STREAM_JOBS} stream, {NOOP_JOBS} no-op]",
)
@click.option(
    "--images-per-host", default=_SCALE.images_per_host, show_default=True, type=click.IntRange(1)
)
@click.option(
    "--rows-per-host", default=_SCALE.rows_per_host, show_default=True, type=click.IntRange(1)
)
@click.option(
    "--rounds", default=_SCALE.rounds, show_default=True, type=click.IntRange(1), help="Medians."
)
@click.option(
    "--workloads", default="stream,bulk,vision,celery_noop", show_default=True, help="Which to run."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("bench-results/scale.json"),
    show_default=True,
    help="The JSON; the table (.md) and the plot (.png) go beside it.",
)
@click.option(
    "--trace",
    type=click.Path(path_type=Path, file_okay=False),
    help="Also write each round's samples and answers here, one JSON file a round.",
)
def bench_scale(
    host_counts: str,
    host_cpu: float,
    producers: int,
    jobs_per_host: int | None,
    images_per_host: int,
    rows_per_host: int,
    rounds: int,
    workloads: str,
    as_json: bool,
    out: Path,
    trace: Path | None,
) -> None:
    """Throughput vs simulated hosts (namespaces with a CPU cap each), with plain Celery."""
    from inferq.bench.scale import (
        HostsUnavailable,
        parse_hosts,
        parse_workloads,
        run_scale_bench,
    )
    from inferq.bench.scale_plot import plot
    from inferq.bench.scale_report import table
    from inferq.bench.scale_sizes import ScaleSizes

    try:
        sizes = ScaleSizes(
            parse_hosts(host_counts), host_cpu, producers, jobs_per_host, images_per_host,
            rows_per_host, rounds, parse_workloads(workloads),
        )  # fmt: skip
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        if trace is not None:
            trace.mkdir(parents=True, exist_ok=True)
        models = _settings_with_models("regressor", "classifier")
        result = run_scale_bench(models, sizes, trace)
    except HostsUnavailable as exc:
        click.echo(f"inferq bench scale: cannot make simulated hosts here: {exc}", err=True)
        raise SystemExit(exit_codes.USAGE) from None
    text = table(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    no_plot = plot(result, out.with_suffix(".png"))
    _emit(result, as_json, out)
    click.echo(text, err=as_json)
    click.echo(no_plot or f"plot: {out.with_suffix('.png')}", err=True)


@bench.command("soak")
@click.option("--minutes", default=20.0, show_default=True, type=click.FloatRange(min=0.2))
@click.option("--fault-every-s", default=20.0, show_default=True, type=click.FloatRange(min=2.0))
@click.option("--stream-per-s", default=40.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option("--images-per-s", default=2.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option("--bulk-rows", default=20_000, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the JSON here.")
def bench_soak(
    minutes: float,
    fault_every_s: float,
    stream_per_s: float,
    images_per_s: float,
    bulk_rows: int,
    as_json: bool,
    out: Path | None,
) -> None:
    """Mixed traffic under scheduled faults; every answer checked. Exit 1 if any was
    wrong or lost."""
    from inferq.bench.soak import SoakPlan, run_soak, table

    plan = SoakPlan(minutes, fault_every_s, stream_per_s, images_per_s, bulk_rows)
    report = run_soak(_settings_with_models("regressor", "classifier"), plan)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    click.echo(json.dumps(report, indent=2) if as_json else table(report))
    sys.exit(0 if report["ok"] else 1)
