"""`inferq score` and `inferq score-images`: bulk files through the workers.

Exit codes (inferq.core.exit_codes, docs/bulk.md): 0 every row scored, 1 more failed
rows than --max-errors (the output is still complete), 2 bad usage or input,
3 chunks left unscored (workers unreachable or failing: rerun with --resume),
130 interrupted (rerun with --resume).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pyarrow as pa

from inferq.cli.settings import load_settings
from inferq.cli.waiting import watching
from inferq.core import exit_codes
from inferq.core.tables import TableError
from inferq.errors import InferqError
from producer.bulk.one_model import OnNewModel
from producer.bulk.output_lock import OutputUnusable, output_lock, path_problem
from producer.bulk.report import Summary
from producer.bulk.score_file import DEFAULT_CHUNK_ROWS, ScoreOptions, score_file
from producer.bulk.sinks import ResumableSink, ResumeError

M_TRIM_THRESHOLD = -1  # glibc mallopt parameter numbers
M_MMAP_THRESHOLD = -3
FORMATS = click.Choice(["csv", "parquet", "jsonl"])
ON_NEW_MODEL = click.option(
    "--on-new-model",
    type=click.Choice(["restart", "fail"]),
    default="restart",
    show_default=True,
    help="When the workers' model changes mid-run: score everything again on it, or stop.",
)


def finish(summary: Summary, max_errors: int, summary_json: Path | None, unit: str = "rows") -> int:
    """Print (and write) the summary; the exit code a scheduler sees."""
    click.echo(summary.line(), err=True)
    if summary_json is not None:
        summary_json.write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    for error in summary.first_row_errors:
        click.echo(f"  failed: {error}", err=True)
    if summary.unscored_chunks:
        click.echo(
            f"inferq: {summary.unscored_chunks} chunk(s) not scored ({summary.first_chunk_error}); "
            "the output is not written: rerun with --resume",
            err=True,
        )
        return exit_codes.UNSCORED
    if summary.failed > max_errors:
        click.echo(f"inferq: {summary.failed} {unit} failed (--max-errors {max_errors})", err=True)
        return exit_codes.ROWS_FAILED
    return 0


def _fixed_mmap_threshold(
    threshold_bytes: int = 8 << 20, trim_threshold_bytes: int = 32 << 20
) -> None:
    """Fix glibc's mmap threshold instead of letting it grow as it sees large frees:
    grown to its 32 MiB ceiling, the heap fragments with the file (8M rows: 340 MB peak
    instead of 200 MB). At 128 KiB, though, every array of a 65,536-row chunk (0.5 to
    5 MB) was a fresh mmap, faulted in page by page and unmapped again: 110k page faults
    and 0.26-0.58 s of system CPU per 1M rows. At 8 MiB (the heap trimmed past 32 MiB
    free) they come from the heap: 24-32k faults, 0.11-0.39 s, and 8M rows peak at
    305 MB against 294 (docs/benchmarks.md)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: nothing to tune
    libc.mallopt(M_MMAP_THRESHOLD, threshold_bytes)
    libc.mallopt(M_TRIM_THRESHOLD, trim_threshold_bytes)


def run_guarded(body: Callable[[], int]) -> int:
    """Run a bulk command; every way it can end is one line and a documented exit code."""
    _fixed_mmap_threshold()
    try:
        return body()
    except (TableError, ResumeError, OutputUnusable, pa.ArrowException) as exc:
        click.echo(f"inferq: {exc}", err=True)
        return exit_codes.USAGE
    except InferqError as exc:
        click.echo(f"inferq: {exc}", err=True)
        return exit_codes.UNSCORED
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (inferq.cli turns it into this)
        click.echo("inferq: interrupted; finished chunks are kept: rerun with --resume", err=True)
        return exit_codes.INTERRUPTED
    except OSError as exc:  # a file that cannot be read or written, a full disk
        return _os_error(exc)
    except Exception as exc:  # a bug: still one line, and the parts kept for --resume
        click.echo(
            f"inferq: unexpected {type(exc).__name__}: {exc} (a bug; finished chunks are "
            "kept: rerun with --resume)",
            err=True,
        )
        return exit_codes.UNSCORED


def _os_error(exc: OSError) -> int:
    problem = path_problem(exc)
    if problem is not None:  # a rerun cannot help: a change of path or owner can
        click.echo(f"inferq: {problem}", err=True)
        return exit_codes.USAGE
    click.echo(f"inferq: {exc}; finished chunks are kept: rerun with --resume", err=True)
    return exit_codes.UNSCORED


@click.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--input-format", type=FORMATS, help="Default: from the file's suffix.")
@click.option("--output-format", type=FORMATS, help="Default: from the output's suffix.")
@click.option(
    "--chunk-rows",
    type=click.IntRange(1),
    help=f"Rows per chunk (message). Default: {DEFAULT_CHUNK_ROWS:,} for a new run; with "
    "--resume, the chunking the interrupted run recorded.",
)
@click.option("--in-flight", default=4, show_default=True, type=click.IntRange(1))
@click.option("--resume", is_flag=True, help="Continue an interrupted run (or start one).")
@click.option("--max-errors", default=0, show_default=True, type=click.IntRange(0))
@click.option("--chunk-timeout-s", default=900.0, show_default=True)
@click.option(
    "--resend-after-s", default=120.0, show_default=True, help="Resend an unanswered chunk."
)
@ON_NEW_MODEL
@click.option("--in-process", is_flag=True, help="Run the model here, not on workers.")
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path))
def score(
    source: Path,
    output: Path,
    input_format: str | None,
    output_format: str | None,
    chunk_rows: int | None,
    in_flight: int,
    resume: bool,
    max_errors: int,
    chunk_timeout_s: float,
    resend_after_s: float,
    on_new_model: str,
    in_process: bool,
    summary_json: Path | None,
) -> None:
    """Score a products file (CSV, Parquet, JSON Lines) with the regressor: every input
    row, in order, with earnings_usd and error columns added."""
    options = ScoreOptions(
        chunk_rows, in_flight, input_format, output_format, resume,
        on_new_model="fail" if on_new_model == "fail" else "restart",
    )  # fmt: skip
    settings = load_settings()

    def body() -> int:
        with output_lock(output, "inferq score", ResumableSink.dir_of(output)):
            return scored()

    def scored() -> int:
        if in_process:
            from inferq.tools.local_scorer import LocalScorer

            local = LocalScorer(settings.regressor_path)
            plain = dataclasses.replace(options, direct=not resume)
            return finish(score_file(source, output, local, plain), max_errors, summary_json)
        from producer.bulk.scorers import QueueScorer
        from producer.client import Client

        with Client(settings) as client, watching(settings, "regression"):
            scorer = QueueScorer(
                client, chunk_timeout_s, reuse_stored=resume, resend_after_s=resend_after_s
            )
            return finish(score_file(source, output, scorer, options), max_errors, summary_json)

    sys.exit(run_guarded(body))


@click.command("score-images")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--top", "top_k", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option("--chunk-images", default=64, show_default=True, type=click.IntRange(1))
@click.option("--in-flight", default=4, show_default=True, type=click.IntRange(1))
@click.option(
    "--worker-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The workers' INFERQ_IMAGE_ROOT as seen here: files under it go as paths, not bytes.",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run (or start one).")
@click.option("--max-errors", default=0, show_default=True, type=click.IntRange(0))
@click.option("--timeout-s", default=600.0, show_default=True)
@ON_NEW_MODEL
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path))
def score_images(
    source: Path,
    output: Path,
    top_k: int,
    chunk_images: int,
    in_flight: int,
    worker_root: Path | None,
    resume: bool,
    max_errors: int,
    timeout_s: float,
    on_new_model: str,
    summary_json: Path | None,
) -> None:
    """Classify every image of a directory (recursively) or a manifest (one path per
    line) with the vision workers: one JSON line per image, in a stable order."""
    from producer.bulk.score_images import ImageOptions
    from producer.bulk.score_images import score_images as run
    from producer.client import Client

    options = ImageOptions(chunk_images, in_flight, top_k, timeout_s, resume)
    policy: OnNewModel = "fail" if on_new_model == "fail" else "restart"
    options = dataclasses.replace(options, worker_root=worker_root, on_new_model=policy)
    settings = load_settings()

    def body() -> int:
        lock = output_lock(output, "inferq score-images", ResumableSink.dir_of(output))
        with lock, Client(settings) as client, watching(settings, "vision"):
            summary = run(client, source, output, options)
            return finish(summary, max_errors, summary_json, unit="images")

    sys.exit(run_guarded(body))


COMMANDS: list[click.Command] = [score, score_images]
