"""`inferq predict` and `inferq classify`: jobs through the workers, answers to stdout."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import click

from inferq.cli.settings import load_settings
from inferq.cli.waiting import RESEND_AFTER_S, watching
from inferq.core.contract import ClassifyResult, PredictResult
from inferq.core.tables import TableError, iter_rows, read_header, require_columns
from inferq.errors import InferqError, InvalidInput
from producer.client import Client
from producer.handles import Handle


@click.command()
@click.option("--json", "json_text", help="One row (object) or several (array) of raw features.")
@click.option("--csv", "csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--timeout-s", default=60.0, show_default=True)
@click.option("--rows-per-job", default=256, show_default=True)
def predict(
    json_text: str | None, csv_path: Path | None, timeout_s: float, rows_per_job: int
) -> None:
    """Predict earnings through the workers: JSON lines, or CSV with earnings_usd added."""
    if (json_text is None) == (csv_path is None):
        raise click.UsageError("give exactly one of --json or --csv")
    settings = load_settings()
    try:
        with Client(settings) as client, watching(settings, "regression"):
            if json_text is not None:
                predict_json(client, json_text, sys.stdout, timeout_s)
            else:
                assert csv_path is not None
                predict_csv(client, csv_path, sys.stdout, timeout_s, rows_per_job)
    except (InferqError, TableError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top", "top_k", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
@click.option("--timeout-s", default=120.0, show_default=True)
def classify(images: tuple[Path, ...], top_k: int, as_json: bool, timeout_s: float) -> None:
    """Classify image files through the vision workers (top-k ImageNet labels)."""
    settings = load_settings()
    with Client(settings) as client, watching(settings, "vision"):
        failed = classify_files(
            client, list(images), sys.stdout, top_k=top_k, as_json=as_json, timeout_s=timeout_s
        )
    sys.exit(1 if failed else 0)


def predict_json(client: Client, text: str, out: TextIO, timeout_s: float) -> None:
    """One JSON object per row: the row index, ``earnings_usd`` and the model."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--json is not valid JSON: {exc}") from None
    result = client.submit(rows).wait(timeout_s, resend_after_s=RESEND_AFTER_S)
    for i, dollars in enumerate(result.earnings_usd):
        record = {"row": i, "earnings_usd": dollars, "model": result.model.model_dump()}
        out.write(json.dumps(record) + "\n")


def predict_csv(
    client: Client, path: Path, out: TextIO, timeout_s: float, rows_per_job: int
) -> None:
    """The input's columns plus ``earnings_usd``; non-feature columns pass through."""
    features = client.regressor_info(timeout_s).features
    header = read_header(path)
    require_columns(path, header, features)
    rows = list(iter_rows(path))
    if not rows:
        raise TableError(f"{path} has a header but no rows")
    jobs = [
        (
            start,
            client.submit([_feature_row(r, features) for r in rows[start : start + rows_per_job]]),
        )
        for start in range(0, len(rows), rows_per_job)
    ]
    dollars = _collect(client, jobs, timeout_s)
    writer = csv.writer(out)
    writer.writerow([*header, "earnings_usd"])
    for row, value in zip(rows, dollars, strict=True):
        writer.writerow([*(row.get(name, "") for name in header), f"{value:.2f}"])


def _collect(
    client: Client, jobs: list[tuple[int, Handle[PredictResult]]], timeout_s: float
) -> list[float]:
    """Dollars for every row in file order; the first failure is raised with CSV line numbers."""
    start_of = {handle.id: start for start, handle in jobs}
    results: dict[int, list[float]] = {}
    handles = [h for _, h in jobs]
    for handle, outcome in client.as_completed(handles, timeout_s, resend_after_s=RESEND_AFTER_S):
        if isinstance(outcome, InferqError):
            raise _with_lines(outcome, start_of[handle.id])
        results[start_of[handle.id]] = outcome.earnings_usd
    return [v for start in sorted(results) for v in results[start]]


def _with_lines(error: InferqError, start: int) -> InferqError:
    # Row indexes are per job; a CSV user needs file lines (header is line 1).
    details = [
        {**d, "line": None if d.get("row") is None else start + d["row"] + 2} for d in error.details
    ]
    return type(error)({**error.info, "errors": details})


def _feature_row(row: dict[str, str], features: list[str]) -> dict[str, Any]:
    return {name: _number(row[name]) for name in features}


def _number(cell: str) -> float | str:
    # A cell that is not a number is sent as it is: the worker names it in its error.
    try:
        return float(cell)
    except ValueError:
        return cell


def classify_files(
    client: Client, paths: list[Path], out: TextIO, *, top_k: int, as_json: bool, timeout_s: float
) -> int:
    """Print each image's labels (or error) in the order given; the number that failed."""
    handles: list[tuple[Path, Handle[ClassifyResult] | InferqError]] = []
    for path in paths:
        try:
            handles.append((path, client.submit_image(path.read_bytes(), top_k=top_k)))
        except OSError as exc:
            error = {"code": "unreadable_file", "message": f"{path}: {exc.strerror}"}
            handles.append((path, InferqError(error)))
    failed = 0
    for path, handle in handles:
        record: dict[str, Any] = {"source": str(path)}
        try:
            if isinstance(handle, InferqError):
                raise handle
            result = handle.wait(timeout_s, resend_after_s=RESEND_AFTER_S)
            record["labels"] = [label.model_dump(exclude={"index"}) for label in result.labels]
        except InferqError as exc:
            failed += 1
            record["error"] = exc.info
        out.write(json.dumps(record) + "\n" if as_json else _text(record))
    return failed


def _text(record: dict[str, Any]) -> str:
    if "error" in record:
        error = record["error"]
        return f"{record['source']}: error {error.get('code')}: {error.get('message')}\n"
    labels = ", ".join(f"{x['label']} {x['score']:.3f}" for x in record["labels"])
    return f"{record['source']}: {labels}\n"


COMMANDS: list[click.Command] = [predict, classify]
