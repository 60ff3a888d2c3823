"""Validate job rows of raw named features into one float array.

Every row is checked before anything is stacked into a batch, so a bad job
fails alone with errors that name the row, the field and the reason, and the
jobs batched beside it are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from inferq.constants import MAX_ABS_FEATURE
from inferq.errors import InvalidInput

Number = Annotated[
    float, Field(strict=True, allow_inf_nan=False, ge=-MAX_ABS_FEATURE, le=MAX_ABS_FEATURE)
]

# pydantic error type -> our error code (the README's bad-input table).
_CODES = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "float_type": "not_a_number",
    "finite_number": "not_finite",
    "greater_than_equal": "out_of_range",
    "less_than_equal": "out_of_range",
    "dict_type": "row_not_an_object",
}


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
        if isinstance(rows, dict):
            rows = [rows]
        if not isinstance(rows, list):
            raise InvalidInput.with_errors(
                "rows must be an object or a list of objects",
                [_error(None, None, "rows_not_a_list", f"got {type(rows).__name__}")],
            )
        if not rows:
            raise InvalidInput.with_errors(
                "a job needs at least one row", [_error(None, None, "empty_job", "no rows")]
            )
        if len(rows) > self.max_rows:
            message = f"{len(rows)} rows in one job; the limit is {self.max_rows}"
            raise InvalidInput.with_errors(message, [_error(None, None, "too_many_rows", message)])
        try:
            valid = self._adapter.validate_python(rows)
        except ValidationError as exc:
            errors = [_from_pydantic(e) for e in exc.errors(include_url=False)]
            raise InvalidInput.with_errors(f"{len(errors)} invalid value(s)", errors) from None
        return np.array([[row[f] for f in self.features] for row in valid], dtype=np.float64)


def _from_pydantic(err: Any) -> dict[str, Any]:
    loc = tuple(err["loc"])
    row = loc[0] if loc and isinstance(loc[0], int) else None
    field = str(loc[1]) if len(loc) > 1 else None
    code = _CODES.get(err["type"], err["type"])
    return _error(row, field, code, err["msg"])


def _error(row: int | None, field: str | None, code: str, message: str) -> dict[str, Any]:
    return {"row": row, "field": field, "code": code, "message": message}
