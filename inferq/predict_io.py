"""`inferq predict`: rows from JSON or CSV to the workers, dollars to stdout."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, TextIO

from inferq.contract import PredictResult
from inferq.errors import InferqError, InvalidInput
from inferq.tabular import TableError, iter_rows, read_header, require_columns
from producer.client import Client, Handle


def predict_json(client: Client, text: str, out: TextIO, timeout_s: float) -> None:
    """One JSON object per row: the row index, ``earnings_usd`` and the model."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--json is not valid JSON: {exc}") from None
    result = client.predict(rows, timeout_s)
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
    for handle, outcome in client.as_completed([h for _, h in jobs], timeout_s):
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
