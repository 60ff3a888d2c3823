"""The row rules: what a valid row of raw named features is, for stream jobs and bulk
chunks alike.

One rule set, two shapes of input, each checked the fast way for its shape:

* a job's ``rows`` (JSON objects): ``RowValidator`` checks the shape (objects, every
  feature, no unknown field, numbers that are not strings, booleans or null) with one
  pydantic pass, then the values with ``value_codes``;
* a bulk chunk's columns (an Arrow table, a float matrix): producer.bulk.columns finds
  missing and non-numeric cells column by column, then the same ``value_codes``; the
  worker checks a chunk's matrix with ``value_codes`` again.

Every error names the row, the field and a code of the bad-input table
(docs/contract.md), so one table explains stream jobs and bulk files.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from inferq.core.constants import MAX_ABS_FEATURE
from inferq.errors import MAX_FIELD_ERRORS, InvalidInput

# Per-value codes; CODE_NAMES are the contract's error codes, MESSAGES their texts.
OK, MISSING, NOT_A_NUMBER, NOT_FINITE, OUT_OF_RANGE = range(5)
CODE_NAMES = ("ok", "missing_field", "not_a_number", "not_finite", "out_of_range")
MESSAGES = (
    "",
    "no value",
    "not a number",
    "NaN or infinite",
    f"magnitude above {MAX_ABS_FEATURE:g}",
)

# The shape check only: a JSON number (int or float, never a bool or a string). Whether
# it is finite and in range is the value rule below, shared with bulk chunks.
Number = Annotated[float, Field(strict=True)]

# pydantic error type -> our error code.
_SHAPE_CODES = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "float_type": "not_a_number",
    "dict_type": "row_not_an_object",
}


def value_codes(values: np.ndarray) -> np.ndarray:
    """OK, NOT_FINITE or OUT_OF_RANGE for each value of a float array."""
    codes = np.zeros(values.shape, dtype=np.int8)
    with np.errstate(invalid="ignore"):
        codes[np.abs(values) > MAX_ABS_FEATURE] = OUT_OF_RANGE
    codes[~np.isfinite(values)] = NOT_FINITE
    return codes


def all_values_pass(values: np.ndarray) -> bool:
    """Whether every value of a float array is OK by ``value_codes``' rule (finite, and
    within MAX_ABS_FEATURE): two reductions, where the codes take one per value."""
    if not values.size:
        return True
    peak = float(np.abs(values).max())  # NaN if any value is NaN; compared as float64
    return bool(np.isfinite(values).all()) and peak <= MAX_ABS_FEATURE


def first_problems(codes: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """(row, column, code) of the first problem of each bad row, in feature order."""
    bad = codes != OK
    for row in np.flatnonzero(bad.any(axis=1)):
        col = int(np.argmax(bad[row]))
        yield int(row), col, int(codes[row, col])


def field_error(row: int | None, field: str | None, code: str, message: str) -> dict[str, Any]:
    """One entry of an InvalidInput's ``errors`` (the contract's FieldError)."""
    return {"row": row, "field": field, "code": code, "message": message}


def value_errors(codes: np.ndarray, features: Sequence[str]) -> list[dict[str, Any]]:
    """Every bad value of a (rows x features) code array, row by row."""
    rows, cols = np.nonzero(codes != OK)
    errors = []
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        code = int(codes[r, c])
        errors.append(field_error(r, features[c], CODE_NAMES[code], MESSAGES[code]))
    return errors


class RowValidator:
    """Turns ``rows`` (one object or a list of objects) into a (rows x features) array."""

    def __init__(self, features: Sequence[str], max_rows: int) -> None:
        self.features = tuple(features)
        self.max_rows = max_rows
        row_type = TypedDict(  # type: ignore[misc]
            "Row", {name: Number for name in self.features}, total=True
        )
        row_type.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
        self._adapter: TypeAdapter[Any] = TypeAdapter(list[row_type])

    def validate(self, rows: Any) -> np.ndarray:
        rows = self._as_list(rows)
        self._refuse_a_flood_of_fields(rows)
        try:
            valid = self._adapter.validate_python(rows)
        except ValidationError as exc:
            errors = [_from_pydantic(e) for e in exc.errors(include_url=False)]
            errors += value_errors(value_codes(self._numbers_of(rows)), self.features)
            errors.sort(key=lambda e: -1 if e["row"] is None else e["row"])
            raise InvalidInput.with_errors(f"{len(errors)} invalid value(s)", errors) from None
        x = np.array([[row[f] for f in self.features] for row in valid], dtype=np.float64)
        codes = value_codes(x)
        if codes.any():
            errors = value_errors(codes, self.features)
            raise InvalidInput.with_errors(f"{len(errors)} invalid value(s)", errors)
        return x

    def _as_list(self, rows: Any) -> list[Any]:
        if isinstance(rows, dict):
            return [rows]
        if not isinstance(rows, list):
            detail = field_error(None, None, "rows_not_a_list", f"got {type(rows).__name__}")
            raise InvalidInput.with_errors("rows must be an object or a list of objects", [detail])
        if not rows:
            detail = field_error(None, None, "empty_job", "no rows")
            raise InvalidInput.with_errors("a job needs at least one row", [detail])
        if len(rows) > self.max_rows:
            message = f"{len(rows)} rows in one job; the limit is {self.max_rows}"
            raise InvalidInput.with_errors(
                message, [field_error(None, None, "too_many_rows", message)]
            )
        return rows

    def _refuse_a_flood_of_fields(self, rows: list[Any]) -> None:
        """Rows with more unknown fields than an error lists are refused here, counted at
        C speed: pydantic would build one error per field (64 rows of 100,000 keys: six
        million dicts) before anything could be capped."""
        known = set(self.features)
        dicts = [(i, row) for i, row in enumerate(rows) if isinstance(row, dict)]
        unknown = sum(len(row) - len(known & row.keys()) for _, row in dicts)
        if unknown <= MAX_FIELD_ERRORS:
            return
        first = itertools.islice(
            ((i, key) for i, row in dicts for key in row if key not in known), MAX_FIELD_ERRORS
        )
        message = "Extra inputs are not permitted"  # pydantic's words for the same error
        errors = [field_error(i, str(key), "unknown_field", message) for i, key in first]
        raise InvalidInput.with_errors(
            f"{unknown} invalid value(s)", errors, omitted=unknown - len(errors)
        )

    def _numbers_of(self, rows: list[Any]) -> np.ndarray:
        """The cells pydantic took for numbers (0 elsewhere): the error path's value check."""
        x = np.zeros((len(rows), len(self.features)))
        for i, row in enumerate(rows):
            if isinstance(row, dict):
                for j, name in enumerate(self.features):
                    x[i, j] = _number_or_zero(row.get(name))
        return x


def _number_or_zero(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0  # a shape error, reported by pydantic already
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float: pydantic's not_a_number says so
        return 0.0


def _from_pydantic(err: Any) -> dict[str, Any]:
    loc = tuple(err["loc"])
    row = loc[0] if loc and isinstance(loc[0], int) else None
    field = str(loc[1]) if len(loc) > 1 else None
    return field_error(row, field, _SHAPE_CODES.get(err["type"], err["type"]), err["msg"])
