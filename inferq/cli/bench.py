"""`inferq bench ...`: self-contained benchmarks (they start and stop what they measure).

Attached to the main group by `inferq.cli`; this module does not import that one,
so either can be imported first.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from inferq.cli.settings import load_settings


def _emit(result: dict[str, object], as_json: bool, out: Path | None) -> None:
    text = json.dumps(result, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    click.echo(text if as_json else "\n".join(f"{k}: {v}" for k, v in result.items()))


@click.group()
def bench() -> None:
    """Benchmarks: self-contained, they start and stop what they measure."""


@bench.command("vision")
@click.option("--imagenet-images", default=400, show_default=True, type=click.IntRange(1))
@click.option("--phone-images", default=48, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the JSON here.")
def bench_vision(imagenet_images: int, phone_images: int, as_json: bool, out: Path | None) -> None:
    """ImageNet-size and phone-size JPEGs through one vision worker (bulk and stream) vs
    the in-process script a user would write, and the raw model."""
    from inferq.bench.vision import run_vision_bench

    result = run_vision_bench(load_settings(), imagenet=imagenet_images, phone=phone_images)
    _emit(result, as_json, out)


@bench.command("bulk")
@click.option("--rows", default=1_000_000, show_default=True)
@click.option("--chunk-rows", default=16_384, show_default=True)
@click.option("--in-flight", default=4, show_default=True)
@click.option("--max-batch", default=8192, show_default=True, help="The worker's max batch size.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the JSON here.")
def bench_bulk(
    rows: int, chunk_rows: int, in_flight: int, max_batch: int, as_json: bool, out: Path | None
) -> None:
    """A generated products file scored through one worker vs in one process."""
    from inferq.bench.bulk import run_bulk_bench

    result = run_bulk_bench(
        load_settings(), rows=rows, chunk_rows=chunk_rows, in_flight=in_flight, max_batch=max_batch
    )
    _emit(result, as_json, out)


@bench.command("stream")
@click.option("--jobs", default=2000, show_default=True)
@click.option(
    "--seed-jobs", default=200, show_default=True, help="Jobs for the slow seed baseline."
)
@click.option("--rounds", default=3, show_default=True, help="Alternating (a)/(b) rounds; medians.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the JSON here.")
def bench_stream(jobs: int, seed_jobs: int, rounds: int, as_json: bool, out: Path | None) -> None:
    """Single-row jobs through one worker vs a no-op task vs model.predict per job."""
    from inferq.bench.stream import run_stream_bench

    result = run_stream_bench(load_settings(), jobs=jobs, seed_jobs=seed_jobs, rounds=rounds)
    _emit(result, as_json, out)


@bench.command("scale")
@click.option("--jobs", default=2000, show_default=True, type=click.IntRange(1))
@click.option("--rows", default=1_000_000, show_default=True, type=click.IntRange(1))
@click.option(
    "--rounds", default=3, show_default=True, type=click.IntRange(1), help="Rounds; medians."
)
@click.option("--chunk-rows", default=16_384, show_default=True, type=click.IntRange(1))
@click.option("--in-flight", default=4, show_default=True, type=click.IntRange(1))
@click.option("--max-batch", default=8192, show_default=True, help="Bulk workers' max batch size.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the JSON here.")
def bench_scale(
    jobs: int,
    rows: int,
    rounds: int,
    chunk_rows: int,
    in_flight: int,
    max_batch: int,
    as_json: bool,
    out: Path | None,
) -> None:
    """Stream jobs/s and bulk rows/s with 1 and with 2 worker processes, and CPU per job."""
    from inferq.bench.scale import BulkSizes, run_scale_bench

    bulk = BulkSizes(rows=rows, chunk_rows=chunk_rows, in_flight=in_flight, max_batch=max_batch)
    _emit(run_scale_bench(load_settings(), jobs=jobs, bulk=bulk, rounds=rounds), as_json, out)
