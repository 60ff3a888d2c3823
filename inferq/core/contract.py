"""The job contract: payloads, results and errors as pydantic models.

Producers and workers share these; ``inferq schema`` writes them as JSON
Schema (docs/schema/) for services that enqueue without importing inferq, and
the workers check each job's arguments against its payload model's fields
(worker.jobs.checks), so the two cannot drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from inferq.core.constants import (
    CLASSIFIER_INFO_TASK,
    CLASSIFY_CHUNK_TASK,
    CLASSIFY_TASK,
    MODEL_INFO_TASK,
    PREDICT_TASK,
    SCORE_CHUNK_TASK,
    TOP_K_MAX,
)


class PredictPayload(BaseModel):
    """Keyword arguments of ``inferq.predict_earnings``."""

    model_config = ConfigDict(extra="forbid", title="inferq.predict_earnings payload (task kwargs)")

    rows: dict[str, float] | list[dict[str, float]] = Field(
        description="One row or a list of rows of raw named features, e.g. "
        '{"critic_rating": 3.5, "is_action": 1, ..., "unit_price": 59.99}. '
        "Every feature of the model is required; unknown fields are refused; "
        "values must be finite JSON numbers (not strings, not booleans)."
    )


class ModelInfo(BaseModel):
    name: str
    version: str = Field(description="First 12 hex digits of the model file's SHA-256.")


class BatchInfo(BaseModel):
    id: int = Field(description="Forward pass number within the worker process.")
    rows: int = Field(description="Real rows in that forward pass (all jobs).")
    padded_rows: int = Field(description="Rows after padding to a fixed bucket size.")
    jobs: int = Field(description="Jobs (or job parts) that shared the forward pass.")
    passes: int = Field(1, description="Forward passes this job needed (rows > max batch).")


class Timings(BaseModel):
    batch_wait_ms: float = Field(description="From queued in the batcher to its forward pass.")
    inference_ms: float = Field(description="The forward pass (the whole batch).")
    total_ms: float = Field(description="From task start to result ready, in the worker.")


class PredictResult(BaseModel):
    """Result of ``inferq.predict_earnings`` (state SUCCESS)."""

    model_config = ConfigDict(title="inferq.predict_earnings result")

    earnings_usd: list[float] = Field(
        description="Predicted total earnings, one per row, in order."
    )
    model: ModelInfo
    batch: BatchInfo
    timings_ms: Timings


class RegressorInfoPayload(BaseModel):
    """Keyword arguments of ``inferq.regressor_info``: none."""

    model_config = ConfigDict(extra="forbid", title="inferq.regressor_info payload (task kwargs)")


class ClassifierInfoPayload(BaseModel):
    """Keyword arguments of ``inferq.classifier_info``: none."""

    model_config = ConfigDict(extra="forbid", title="inferq.classifier_info payload (task kwargs)")


class ClassifierInfo(BaseModel):
    """Result of ``inferq.classifier_info``: the serving classifier."""

    model_config = ConfigDict(title="inferq.classifier_info result")

    model: ModelInfo
    labels: int = Field(description="How many classes the model scores.")


class RegressorInfo(BaseModel):
    """Result of ``inferq.regressor_info``: what the serving regressor expects."""

    model_config = ConfigDict(title="inferq.regressor_info result")

    model: ModelInfo
    features: list[str]
    target: str
    inputs: str = Field(description="'raw' (the worker scales) or 'prescaled'.")


class ClassifyPayload(BaseModel):
    """Keyword arguments of ``inferq.classify_image``: exactly one of image_b64 or path."""

    model_config = ConfigDict(extra="forbid", title="inferq.classify_image payload (task kwargs)")

    image_b64: str | None = Field(
        None, description="The image file's bytes (JPEG, PNG, GIF, WebP, BMP), base64."
    )
    path: str | None = Field(
        None, description="A path relative to the worker's INFERQ_IMAGE_ROOT (nothing outside it)."
    )
    top_k: int = Field(5, ge=1, le=TOP_K_MAX, description="How many labels to return.")


class Label(BaseModel):
    index: int = Field(description="The class's index in the model's output.")
    wnid: str = Field(description="WordNet id, e.g. n02123159 (empty for label-only models).")
    label: str
    score: float = Field(description="The model's probability for this class.")


class VisionTimings(BaseModel):
    decode_ms: float = Field(description="Reading, decoding and preprocessing the image.")
    batch_wait_ms: float
    inference_ms: float
    total_ms: float


class ClassifyResult(BaseModel):
    """Result of ``inferq.classify_image`` (state SUCCESS)."""

    model_config = ConfigDict(title="inferq.classify_image result")

    labels: list[Label] = Field(description="Top-k classes, best first.")
    model: ModelInfo
    batch: BatchInfo
    timings_ms: VisionTimings


class ImageItem(BaseModel):
    """One image of a chunk: exactly one of image_b64, path or blob."""

    model_config = ConfigDict(extra="forbid")

    image_b64: str | None = Field(None, description="The image file's bytes, base64.")
    path: str | None = Field(None, description="A path relative to INFERQ_IMAGE_ROOT.")
    blob: str | None = Field(
        None,
        pattern="^[0-9a-f]{32}$",
        description="32 hex digits: the image file's bytes are the value of the Redis key "
        "'inferq-image:' + blob on the broker (stored by the producer, raw).",
    )


class ClassifyChunkPayload(BaseModel):
    """Keyword arguments of ``inferq.classify_images``: many images in one message (bulk)."""

    model_config = ConfigDict(extra="forbid", title="inferq.classify_images payload (task kwargs)")

    images: list[ImageItem] = Field(
        description="The images, at most INFERQ_MAX_CHUNK_IMAGES; answered in this order."
    )
    top_k: int = Field(5, ge=1, le=TOP_K_MAX, description="How many labels per image.")
    model_version: str | None = Field(
        None,
        description="The classifier version the producer's run uses; a worker serving "
        "another refuses the chunk with model_version_mismatch (null: any version).",
    )

    @staticmethod
    def item_fields() -> tuple[str, ...]:
        return tuple(ImageItem.model_fields)


class FieldError(BaseModel):
    row: int | None = Field(description="Index of the bad row in the job, if one row is at fault.")
    field: str | None = Field(description="The bad field, if one field is at fault.")
    code: str = Field(description="missing_field, unknown_field, not_a_number, not_finite, ...")
    message: str


class JobError(BaseModel):
    """A failed job (state FAILURE): Celery stores ``exc_type`` and ``exc_message``=[this]."""

    model_config = ConfigDict(title="inferq job error (exc_message[0])")

    code: str = Field(description="invalid_input, model_unavailable, inference_failed, ...")
    message: str
    errors: list[FieldError] = Field(
        default_factory=list, description="The first 100 problems, in order."
    )
    errors_omitted: int = Field(0, description="Problems beyond those listed (not sent).")


class ImageOutcome(BaseModel):
    """One image of a chunk: its labels, or the error that image alone met."""

    labels: list[Label] | None = Field(description="Top-k classes, best first; null on error.")
    error: JobError | None = Field(description="Why this image has no labels; null if it has.")


class ClassifyChunkResult(BaseModel):
    """Result of ``inferq.classify_images`` (state SUCCESS); bad images are listed, not fatal."""

    model_config = ConfigDict(title="inferq.classify_images result")

    results: list[ImageOutcome] = Field(description="One per image, in the payload's order.")
    model: ModelInfo
    passes: int = Field(description="Forward passes the chunk's images took part in.")
    timings_ms: dict[str, float]


class ScoreChunkPayload(BaseModel):
    """Keyword arguments of ``inferq.score_chunk``: many rows in one compact message."""

    model_config = ConfigDict(extra="forbid", title="inferq.score_chunk payload (task kwargs)")

    chunk_id: str = Field(description="Deterministic id of the chunk (also its task id).")
    features: list[str] = Field(description="Column order of ``data``; the model's features.")
    rows: int = Field(ge=0, description="Rows in ``data``.")
    data: str = Field(
        description="Base64 of the raw values as little-endian float32, column-major "
        "(all rows of the first feature, then the next), compressed as ``compression`` says."
    )
    compression: Literal["zstd", "zlib"] | None = Field(
        None,
        description="zstd (one frame that names its content size; what inferq producers "
        "send), zlib (one stream; older producers), or null for none.",
    )
    model_version: str | None = Field(
        None,
        description="The model version the producer's run uses; a worker serving another "
        "refuses the chunk with model_version_mismatch (null: any version).",
    )


class ScoreChunkResult(BaseModel):
    """Result of ``inferq.score_chunk`` (state SUCCESS); bad rows are listed, not fatal."""

    model_config = ConfigDict(title="inferq.score_chunk result")

    chunk_id: str
    rows: int
    earnings_usd_f64: str = Field(
        description="Base64 of one little-endian float64 per row; NaN for a row in row_errors."
    )
    row_errors: list[FieldError] = Field(default_factory=list)
    model: ModelInfo
    passes: int = Field(description="Forward passes the chunk's rows took part in.")
    timings_ms: dict[str, float]


SCHEMAS: dict[str, type[BaseModel]] = {
    f"{PREDICT_TASK}.payload": PredictPayload,
    f"{PREDICT_TASK}.result": PredictResult,
    f"{MODEL_INFO_TASK}.payload": RegressorInfoPayload,
    f"{MODEL_INFO_TASK}.result": RegressorInfo,
    f"{CLASSIFIER_INFO_TASK}.payload": ClassifierInfoPayload,
    f"{CLASSIFIER_INFO_TASK}.result": ClassifierInfo,
    f"{CLASSIFY_TASK}.payload": ClassifyPayload,
    f"{CLASSIFY_TASK}.result": ClassifyResult,
    f"{CLASSIFY_CHUNK_TASK}.payload": ClassifyChunkPayload,
    f"{CLASSIFY_CHUNK_TASK}.result": ClassifyChunkResult,
    f"{SCORE_CHUNK_TASK}.payload": ScoreChunkPayload,
    f"{SCORE_CHUNK_TASK}.result": ScoreChunkResult,
    "inferq.job_error": JobError,
}


def schema_documents() -> dict[str, dict[str, Any]]:
    return {name: model.model_json_schema() for name, model in SCHEMAS.items()}


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, doc in schema_documents().items():
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths
