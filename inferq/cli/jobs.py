"""`inferq predict` and `inferq classify`: jobs through the workers, answers to stdout.

A command that times out still prints every answer it has, in input order, each
unanswered row or image with the error `timeout` in its place, and exits UNANSWERED
(3); a job answered with an error exits ROWS_FAILED (1) (inferq.core.exit_codes).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import click

from inferq.cli.settings import load_settings
from inferq.cli.waiting import RESEND_AFTER_S, watching
from inferq.core import exit_codes
from inferq.core.contract import ClassifyResult, PredictResult
from inferq.core.tables import TableError, iter_rows, read_header, require_columns
from inferq.errors import InferqError, InvalidInput, JobTimeout
from producer.client import Client
from producer.handles import Handle


class Unanswered(click.ClickException):
    """Some jobs had no answer within --timeout-s; what was answered is printed."""

    exit_code = exit_codes.UNANSWERED


def _timeout(timeout_s: float) -> dict[str, str]:
    return {"code": JobTimeout.code, "message": f"no answer within {timeout_s:g} s"}


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
    except JobTimeout as exc:  # nothing answered (no worker gave the model's features)
        raise Unanswered(str(exc)) from None
    except (InferqError, TableError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top", "top_k", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
@click.option(
    "--timeout-s", default=120.0, show_default=True, help="Longest wait for all the answers."
)
def classify(images: tuple[Path, ...], top_k: int, as_json: bool, timeout_s: float) -> None:
    """Classify image files through the vision workers (top-k ImageNet labels)."""
    settings = load_settings()
    with Client(settings) as client, watching(settings, "vision"):
        failed, unanswered = classify_files(
            client, list(images), sys.stdout, top_k=top_k, as_json=as_json, timeout_s=timeout_s
        )
    if unanswered:
        raise Unanswered(
            f"{unanswered} of {len(images)} image(s) not answered within {timeout_s:g} s"
        )
    sys.exit(exit_codes.ROWS_FAILED if failed else exit_codes.OK)


def predict_json(client: Client, text: str, out: TextIO, timeout_s: float) -> None:
    """One JSON object per row: the row index, ``earnings_usd`` and the model."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--json is not valid JSON: {exc}") from None
    try:
        result = client.submit(rows).wait(timeout_s, resend_after_s=RESEND_AFTER_S)
    except JobTimeout:
        count = len(rows) if isinstance(rows, list) else 1
        for i in range(count):
            out.write(json.dumps({"row": i, "error": _timeout(timeout_s)}) + "\n")
        raise Unanswered(f"{count} row(s) not answered within {timeout_s:g} s") from None
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
    missing = sum(value is None for value in dollars)
    # An `error` column only when a row has no answer: a complete output keeps its shape.
    error = [f"timeout: {_timeout(timeout_s)['message']}"] if missing else []
    writer = csv.writer(out)
    writer.writerow([*header, "earnings_usd", *(["error"] if missing else [])])
    for row, value in zip(rows, dollars, strict=True):
        cells = [*(row.get(name, "") for name in header)]
        if value is None:
            writer.writerow([*cells, "", *error])
        else:
            writer.writerow([*cells, f"{value:.2f}", *([""] if missing else [])])
    if missing:
        raise Unanswered(f"{missing} of {len(rows)} row(s) not answered within {timeout_s:g} s")


def _collect(
    client: Client, jobs: list[tuple[int, Handle[PredictResult]]], timeout_s: float
) -> list[float | None]:
    """Dollars for every row in file order, None for a row whose job was not answered in
    time; a job answered with an error is raised, with CSV line numbers."""
    start_of = {handle.id: start for start, handle in jobs}
    results: dict[int, list[float | None]] = {s: [None] * h.rows for s, h in jobs}
    handles = [h for _, h in jobs]
    try:
        for handle, outcome in client.as_completed(
            handles, timeout_s, resend_after_s=RESEND_AFTER_S
        ):
            if isinstance(outcome, InferqError):
                raise _with_lines(outcome, start_of[handle.id])
            results[start_of[handle.id]] = list(outcome.earnings_usd)
    except JobTimeout:
        pass  # the rows of the jobs left keep None: printed with the error `timeout`
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
) -> tuple[int, int]:
    """Print each image's labels (or error) in the order given, as soon as it and those
    before it are answered; (images failed, images not answered within ``timeout_s``)."""
    printer = _InOrder(paths, out, as_json)
    sent: list[Handle[ClassifyResult]] = []
    place: dict[str, int] = {}  # job id -> its image's place
    for index, path in enumerate(paths):
        try:
            sent.append(client.submit_image(path.read_bytes(), top_k=top_k))
            place[sent[-1].id] = index
        except OSError as exc:
            error = {"code": "unreadable_file", "message": f"{path}: {exc.strerror}"}
            printer.answer(index, InferqError(error))
    try:
        for handle, outcome in client.as_completed(sent, timeout_s, resend_after_s=RESEND_AFTER_S):
            printer.answer(place[handle.id], outcome)
    except JobTimeout:
        pass  # the images left get the error `timeout`, in their places
    unanswered = printer.unanswered()
    for index in unanswered:
        printer.answer(index, JobTimeout(_timeout(timeout_s)))
    return printer.failed, len(unanswered)


class _InOrder:
    """Prints outcomes in the images' order, each once all before it are answered."""

    def __init__(self, paths: list[Path], out: TextIO, as_json: bool) -> None:
        self.paths, self.out, self.as_json = paths, out, as_json
        self.outcomes: list[ClassifyResult | InferqError | None] = [None] * len(paths)
        self.printed = 0
        self.failed = 0

    def answer(self, index: int, outcome: ClassifyResult | InferqError) -> None:
        self.outcomes[index] = outcome
        while self.printed < len(self.paths):
            done = self.outcomes[self.printed]
            if done is None:
                return
            self._print(self.paths[self.printed], done)
            self.printed += 1

    def unanswered(self) -> list[int]:
        return [i for i, outcome in enumerate(self.outcomes) if outcome is None]

    def _print(self, path: Path, outcome: ClassifyResult | InferqError) -> None:
        record: dict[str, Any] = {"source": str(path)}
        if isinstance(outcome, InferqError):
            self.failed += 1
            record["error"] = outcome.info
        else:
            record["labels"] = [label.model_dump(exclude={"index"}) for label in outcome.labels]
        self.out.write(json.dumps(record) + "\n" if self.as_json else _text(record))
        self.out.flush()


def _text(record: dict[str, Any]) -> str:
    if "error" in record:
        error = record["error"]
        return f"{record['source']}: error {error.get('code')}: {error.get('message')}\n"
    labels = ", ".join(f"{x['label']} {x['score']:.3f}" for x in record["labels"])
    return f"{record['source']}: {labels}\n"


COMMANDS: list[click.Command] = [predict, classify]
