"""What every job body shares: its arguments checked against the contract, and the
small pieces of a result.

Celery calls a task with whatever the message holds, so a misspelt keyword (``row``
for ``rows``) or a missing one would end in a TypeError: stored as an untyped error,
with a traceback in the log. Checked first against the task's payload model in
inferq.core.contract (the same model the published JSON Schema comes from), it is an
InvalidInput naming each argument, like the row errors of the contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from inferq.core.constants import TOP_K_MAX
from inferq.core.rows import field_error
from inferq.errors import InvalidInput
from worker.engine.runner import BatchOutput

Payload = type[BaseModel]


def argument_errors(
    payload: Payload, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """What is wrong with calling a task of this payload with these arguments; [] if nothing.

    Positional arguments fill the payload's fields in their declared order."""
    fields = payload.model_fields
    names = list(fields)
    errors = [
        field_error(None, k, "unknown_argument", f"the task has no argument {k!r}")
        for k in kwargs
        if k not in fields
    ]
    if len(args) > len(names):
        message = f"{len(args)} positional arguments; the task takes at most {len(names)}"
        errors.append(field_error(None, None, "too_many_arguments", message))
    positional = names[: len(args)]
    errors += [
        field_error(None, name, "invalid_arguments", f"argument {name!r} is given twice")
        for name in positional
        if name in kwargs
    ]
    given = set(kwargs) | set(positional)
    errors += [
        field_error(None, name, "missing_argument", f"the task needs argument {name!r}")
        for name, info in fields.items()
        if info.is_required() and name not in given
    ]
    return errors


def bind_arguments(
    payload: Payload, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The job's arguments by name, defaults filled in; InvalidInput when they are wrong."""
    errors = argument_errors(payload, args, kwargs)
    if errors:
        raise InvalidInput.with_errors(f"{len(errors)} invalid argument(s)", errors)
    fields = payload.model_fields
    bound = {name: info.get_default() for name, info in fields.items() if not info.is_required()}
    bound.update(zip(fields, args, strict=False))
    bound.update(kwargs)
    return bound


def top_k(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= TOP_K_MAX:
        message = f"top_k must be an integer from 1 to {TOP_K_MAX}, not {value!r}"
        raise InvalidInput.single("top_k", "invalid_top_k", message)
    return value


def to_ms(seconds: float) -> float:
    # Microsecond resolution is plenty, and short numbers keep results small.
    return round(seconds * 1000, 3)


def batch_info(parts: list[BatchOutput]) -> dict[str, int]:
    """BatchInfo as a dict. Results are built as plain dicts in the shape of the contract's
    models (tests validate them against the published JSON Schema): constructing and
    dumping a pydantic model per job cost more than the rest of the job's own work."""
    first = parts[0]
    return {
        "id": first.batch_id,
        "rows": first.batch_rows,
        "padded_rows": first.padded_rows,
        "jobs": first.batch_jobs,
        "passes": len(parts),
    }
