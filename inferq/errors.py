"""Typed job errors.

A job that cannot be answered fails with one of these. Each carries a single
JSON-able dict argument so that Celery's JSON result backend stores it as
``{"exc_type": "InvalidInput", "exc_message": [{"code": ..., ...}], "exc_module":
"inferq.errors"}`` and a Python producer gets the same class back.

This module belongs to the shared core, but lives at ``inferq.errors``, not in
``inferq/core/``: its path is part of every failed job's stored result (Celery's
``exc_module``), and a producer finds the class again only under the same name.
"""

from __future__ import annotations

from typing import Any, ClassVar


class InferqError(Exception):
    """Base of every error a job can end with."""

    code: ClassVar[str] = "error"

    def __init__(self, info: dict[str, Any] | str) -> None:
        if isinstance(info, str):
            info = {"code": self.code, "message": info}
        super().__init__(info)

    @property
    def info(self) -> dict[str, Any]:
        info = self.args[0]
        return info if isinstance(info, dict) else {"code": self.code, "message": str(info)}

    @property
    def message(self) -> str:
        return str(self.info.get("message", ""))

    @property
    def details(self) -> list[dict[str, Any]]:
        return list(self.info.get("errors", []))

    def __str__(self) -> str:
        lines = [f"{self.info.get('code', self.code)}: {self.message}"]
        for d in self.details:
            where = f"line {d['line']}" if d.get("line") else f"row {d.get('row')}"
            lines.append(f"  {where}, {d.get('field')}: {d.get('code')}: {d.get('message')}")
        return "\n".join(lines)


# An error lists its first problems, and counts the rest (``errors_omitted``): a job
# with a million bad fields gets a small answer, not a million dicts.
MAX_FIELD_ERRORS = 100


class InvalidInput(InferqError):
    """The payload broke the contract; ``errors`` says which row and field."""

    code = "invalid_input"

    @classmethod
    def with_errors(
        cls, message: str, errors: list[dict[str, Any]], *, omitted: int = 0
    ) -> InvalidInput:
        """``errors`` beyond the first MAX_FIELD_ERRORS are counted, not listed; so are
        ``omitted`` more that the caller counted without building them."""
        info: dict[str, Any] = {"code": cls.code, "message": message}
        info["errors"] = errors[:MAX_FIELD_ERRORS]
        omitted += max(len(errors) - MAX_FIELD_ERRORS, 0)
        if omitted:
            info["errors_omitted"] = omitted
        return cls(info)

    @classmethod
    def single(cls, field: str | None, code: str, message: str) -> InvalidInput:
        """One problem with the job as a whole (no row), or with one of its fields."""
        return cls.with_errors(
            message, [{"row": None, "field": field, "code": code, "message": message}]
        )


class ModelUnavailable(InferqError):
    """This worker process has no model loaded for the job's task."""

    code = "model_unavailable"


class InferenceFailed(InferqError):
    """The forward pass raised or returned the wrong number of outputs."""

    code = "inference_failed"


class ModelVersionMismatch(InferqError):
    """The job names the model version it was made for, and this worker serves another.

    Not a failure to retry blindly: the producer's run belongs to one model. ``info``
    carries ``expected`` (the job's) and ``served`` (the worker's) versions."""

    code = "model_version_mismatch"

    @classmethod
    def between(cls, expected: str, served: str) -> ModelVersionMismatch:
        message = f"the job expects model version {expected}; this worker serves {served}"
        return cls({"code": cls.code, "message": message, "expected": expected, "served": served})


class ModelFileError(InferqError):
    """A model file is missing, unreadable or lacks inferq's metadata."""

    code = "model_file_error"


class UnknownTask(InferqError):
    """The job named a task no worker on its queue knows (a typo, or a version skew)."""

    code = "unknown_task"


class JobTimeout(InferqError):
    """The producer stopped waiting for a result."""

    code = "timeout"


class ContentRefused(InferqError):
    """The job's message was not JSON (e.g. pickle); it was refused without being decoded."""

    code = "content_refused"


class InvalidMessage(InferqError):
    """The job's message could not be decoded, or its envelope is not a Celery task."""

    code = "invalid_message"


class BrokerUnavailable(InferqError):
    """A job could not be sent: Redis did not answer (down, or the link to it dead)."""

    code = "broker_unavailable"


class JobRevoked(InferqError):
    """The job was revoked before it ran (``celery control revoke``)."""

    code = "revoked"


class JobExpired(JobRevoked):
    """The job's deadline (``expires``) passed while it was queued, so it was never run."""

    code = "expired"
