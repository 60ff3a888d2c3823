"""A job's arguments checked against its task's signature before the task runs.

Celery calls the task with whatever the message holds, so a misspelt keyword
(``row`` for ``rows``) or a missing one ends in a TypeError: stored as an
untyped error, with a traceback in the log. Checked first, it is an
InvalidInput naming each argument, like the row errors of the contract.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from celery import Task

from inferq.errors import InvalidInput

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _error(field: str | None, code: str, message: str) -> dict[str, Any]:
    return {"row": None, "field": field, "code": code, "message": message}


def argument_errors(
    sig: inspect.Signature, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """What is wrong with calling a function of signature ``sig``; [] when nothing is."""
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        reason = str(exc)
    else:
        return []
    params = sig.parameters
    kinds = {p.kind for p in params.values()}
    positional = [name for name, p in params.items() if p.kind in _POSITIONAL]
    errors = []
    if inspect.Parameter.VAR_KEYWORD not in kinds:
        known = {n for n, p in params.items() if p.kind != inspect.Parameter.POSITIONAL_ONLY}
        errors += [
            _error(k, "unknown_argument", f"the task has no argument {k!r}")
            for k in kwargs
            if k not in known
        ]
    if inspect.Parameter.VAR_POSITIONAL not in kinds and len(args) > len(positional):
        message = f"{len(args)} positional arguments; the task takes at most {len(positional)}"
        errors.append(_error(None, "too_many_arguments", message))
    given = set(kwargs) | set(positional[: len(args)])
    errors += [
        _error(name, "missing_argument", f"the task needs argument {name!r}")
        for name, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        and name not in given
    ]
    return errors or [_error(None, "invalid_arguments", reason)]


class InferqTask(Task):  # type: ignore[misc]
    """The workers' task class: arguments are checked before the body runs."""

    _signature: inspect.Signature | None = None

    def before_start(self, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        # Celery runs this inside the task's own error handling: what it raises is
        # stored as the job's result like an error of the body.
        if self._signature is None:
            run: Callable[..., Any] = self.run  # bound for bind=True tasks: no `self` in it
            self._signature = inspect.signature(run)
        errors = argument_errors(self._signature, args, kwargs)
        if errors:
            raise InvalidInput.with_errors(f"{len(errors)} invalid argument(s)", errors)
