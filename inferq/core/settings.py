"""One typed, frozen settings object read from ``INFERQ_*`` variables.

Read once at start-up (never at import time). An ``INFERQ_`` variable that is
not a setting, or a value that does not parse, is an error that names it:
a typo must not silently fall back to a default.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from inferq.core.constants import DEFAULT_CLASSIFIER, DEFAULT_REGRESSION_QUEUE, DEFAULT_VISION_QUEUE

ENV_PREFIX = "INFERQ_"
SENTINEL_SCHEME = "sentinel://"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
MAX_DEFAULT_JOB_SLOTS = 256


class SettingsError(ValueError):
    """The environment holds an unknown or invalid INFERQ_ setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    redis_url: str | None = Field(
        None,
        description="Broker and result backend: redis://, rediss://, unix:// or Sentinels "
        "(sentinel://host:port;sentinel://host2:port/0). Unset: demo, tests and bench start "
        "their own.",
    )
    sentinel_master: str | None = Field(
        None,
        min_length=1,
        description="With sentinel:// URLs: the master's name the Sentinels watch.",
    )
    sentinel_password: str | None = Field(
        None,
        min_length=1,
        description="The Sentinels' own password (requirepass in sentinel.conf); the Redis "
        "password stays in the URL.",
    )
    regressor_path: Path = Field(Path("models/regressor.h5"), description="Regressor HDF5 file.")
    regression_queue: str = Field(DEFAULT_REGRESSION_QUEUE, min_length=1)
    max_batch_size: int = Field(64, ge=1, le=65536, description="Rows per forward pass, at most.")
    max_wait_ms: float = Field(
        5.0, ge=0, le=60_000, description="Longest wait for a batch to fill, from its first row."
    )
    flush_when_drained: bool = Field(
        True,
        description="A waiting stream batch goes as soon as the worker finds its queues "
        "empty, since no job can join it; false: it waits out max_wait_ms unless full.",
    )
    bulk_batch_size: int = Field(
        8192,
        ge=1,
        le=65536,
        description="Rows per forward pass for bulk chunks (score_chunk), at most: sized for "
        "throughput; stream jobs go ahead of them and wait for one such pass at most.",
    )
    bulk_max_delay_ms: float = Field(
        50.0,
        ge=0,
        le=60_000,
        description="While bulk rows wait behind stream jobs, they get a pass at least this "
        "often (stream jobs cannot starve a bulk run).",
    )
    job_slots: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Jobs held at once per worker process (default 2 x max batch, <= 256).",
    )
    max_rows_per_job: int = Field(10_000, ge=1)
    max_chunk_rows: int = Field(
        262_144, ge=1, description="Rows in one bulk-scoring chunk message, at most."
    )
    max_message_bytes: int = Field(
        48 * 1024 * 1024,
        ge=1024,
        description="A queue entry larger than this is dead-lettered before it is decoded.",
    )
    result_ttl_s: int = Field(86_400, ge=1, description="How long results stay in Redis.")
    visibility_timeout_s: int = Field(
        3_600, ge=1, description="Unacked jobs of a lost worker are redelivered after this."
    )
    redis_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="A Redis connect or command with no reply in this long fails, and is "
        "retried on a new connection: a dead link (failover, NAT) never hangs a publish.",
    )
    classifier: str = Field(
        DEFAULT_CLASSIFIER,
        min_length=1,
        description="efficientnet_lite0 (built offline), a keras.applications name or a file.",
    )
    models_dir: Path = Field(Path("models"), description="Where `inferq models build` writes.")
    classifier_weights: Path | None = Field(
        None, description="Weights file for a keras.applications classifier."
    )
    classifier_preprocess: str | None = Field(
        None, description="For a classifier file: lite0, tf, torch, caffe or none."
    )
    classifier_labels: Path | None = Field(
        None, description="For a classifier file: JSON list of labels or [wnid, label] pairs."
    )
    allow_download: bool = Field(False, description="Let Keras download missing weights.")
    vision_queue: str = Field(DEFAULT_VISION_QUEUE, min_length=1)
    vision_max_batch_size: int = Field(16, ge=1, le=4096, description="Images per forward pass.")
    vision_max_wait_ms: float = Field(10.0, ge=0, le=60_000)
    image_root: Path | None = Field(None, description="Jobs may name image files under it.")
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(40_000_000, ge=1)
    max_chunk_images: int = Field(
        64, ge=1, le=4096, description="Images in one classify_images message, at most."
    )
    decode_threads: int | None = Field(
        None, ge=1, le=256, description="Image decoding threads (default: one per core)."
    )
    decode_budget_mb: int = Field(
        1024,
        ge=1,
        description="Memory the images being decoded may hold at once, per worker process.",
    )
    regressor_xla: bool = Field(True, description="Compile the regressor with XLA.")
    inference_timeout_s: float = Field(60.0, gt=0, description="Longest wait for one forward pass.")
    inference_retries: int = Field(
        2, ge=0, le=10, description="Retries of a forward pass that raised, then a typed error."
    )
    retry_backoff_ms: float = Field(
        50.0, ge=0, le=60_000, description="First retry's wait; doubles."
    )
    chaos_forward_failures: int = Field(
        0, ge=0, description="Fault drill: the first N forward passes of each model raise."
    )
    task_events: bool = Field(
        False,
        description="Task events from the start (as in Celery, "
        "off: Flower and `celery control enable_events` turn them on).",
    )
    ready_file: Path | None = Field(
        None, description="Touched when a worker has its models loaded."
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Serve Prometheus metrics on this port plus the process index (0: any "
        "free port); unset: no endpoint.",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address the metrics endpoint listens on (loopback unless opened up).",
    )
    process_index: int = Field(
        0,
        ge=0,
        le=4095,
        description="This worker process's index (0..N-1, set by `inferq worker --concurrency N`).",
    )
    gpus: tuple[Annotated[int, Field(ge=0)], ...] | None = Field(
        None,
        min_length=1,
        description="GPU ids, e.g. 0,1: worker process i sees only GPU ids[i % len] "
        "(CUDA_VISIBLE_DEVICES); unset: CUDA_VISIBLE_DEVICES is left alone.",
    )
    mixed_precision: bool = Field(
        False,
        description="Run the models in mixed_float16, all layers but the outputs (GPUs).",
    )
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url is not None and url.startswith(SENTINEL_SCHEME):
            return _sentinel_url(url)
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss://, unix:// or sentinel://")
        return url or None

    @field_validator("sentinel_master", "sentinel_password", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose writes `${SENTINEL_MASTER:-}` as an empty variable on a plain Redis.
        return None if value == "" else value

    @model_validator(mode="after")
    def _sentinel_settings_agree(self) -> Settings:
        if self.uses_sentinel and not self.sentinel_master:
            raise ValueError(
                "INFERQ_REDIS_URL names Sentinels: set INFERQ_SENTINEL_MASTER to the master's "
                "name they watch (`sentinel monitor NAME ...`)"
            )
        if not self.uses_sentinel and (self.sentinel_master or self.sentinel_password):
            raise ValueError(
                "INFERQ_SENTINEL_MASTER and INFERQ_SENTINEL_PASSWORD need a sentinel:// "
                "INFERQ_REDIS_URL"
            )
        return self

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpu_ids(cls, value: object) -> object:
        # The environment gives one string; explicit overrides may pass a tuple of ints.
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        parts = [part.strip() for part in value.split(",")]
        if not all(re.fullmatch(r"[0-9]+", part) for part in parts):
            raise ValueError(
                f"must be GPU ids (non-negative integers) separated by commas, like 0,1; "
                f"got {value!r}"
            )
        return tuple(int(part) for part in parts)

    @property
    def broker_url(self) -> str:
        return self.redis_url or LOCAL_REDIS_URL

    @property
    def effective_decode_threads(self) -> int:
        # The cores this process may run on (a container's CPU set, not the host's).
        return self.decode_threads or len(os.sched_getaffinity(0))

    @property
    def uses_sentinel(self) -> bool:
        return self.broker_url.startswith(SENTINEL_SCHEME)

    @property
    def effective_job_slots(self) -> int:
        # Two batches' worth of jobs in flight: one running, one filling; capped, since a
        # bulk worker's large batches come from few chunk jobs, not thousands of threads.
        return self.job_slots or min(
            2 * max(self.max_batch_size, self.vision_max_batch_size), MAX_DEFAULT_JOB_SLOTS
        )

    def cuda_env(self) -> dict[str, str]:
        """The CUDA_VISIBLE_DEVICES that pins this worker process to its GPU (round robin
        over INFERQ_GPUS by process index); empty without INFERQ_GPUS, so an operator's
        own CUDA_VISIBLE_DEVICES stays in force."""
        if not self.gpus:
            return {}
        return {"CUDA_VISIBLE_DEVICES": str(self.gpus[self.process_index % len(self.gpus)])}

    def to_env(self) -> dict[str, str]:
        """These settings as ``INFERQ_*`` variables, for a child process's environment:
        how settings given on a command line reach the worker processes it starts."""
        env = {}
        for name, value in self.model_dump(exclude_unset=True).items():
            if value is None:
                continue
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            env[ENV_PREFIX + name.upper()] = text
        return env

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, /, **overrides: object) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``) plus explicit overrides."""
        env = os.environ if environ is None else environ
        unknown = unknown_setting_names(env)
        if unknown:
            raise SettingsError("; ".join(unknown))
        values: dict[str, object] = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in env.items()
            if key.startswith(ENV_PREFIX)
        }
        values.update(overrides)
        try:
            # Values are passed explicitly so that `environ` (not os.environ) is the source.
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None


def _sentinel_url(url: str) -> str:
    """Celery's form: ``sentinel://[:PASSWORD@]HOST:PORT`` parts joined by ``;``; every
    part must name a host. kombu and Celery read the password and the database from the
    first part, so a later part may not name another database."""
    parts = [urlparse(part) for part in url.split(";")]
    if not all(p.scheme == "sentinel" and p.hostname for p in parts):
        raise ValueError(
            "Sentinels are written sentinel://host:port;sentinel://host2:port/0 (each "
            "part sentinel://, with a host)"
        )
    databases = {p.path.strip("/") or "0" for p in parts[1:] if p.path.strip("/")}
    if databases - {parts[0].path.strip("/") or "0"}:
        raise ValueError("name the database on the first sentinel:// part (kombu reads it there)")
    return url


def unknown_setting_names(env: Mapping[str, str]) -> list[str]:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    messages = []
    for key in sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known):
        hint = difflib.get_close_matches(key, known, n=1)
        suffix = f" (did you mean {hint[0]}?)" if hint else ""
        messages.append(f"unknown setting {key}{suffix}")
    return messages


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        name = ENV_PREFIX + str(err["loc"][0]).upper() if err["loc"] else "settings"
        parts.append(f"{name}: {err['msg']}")
    return "; ".join(parts)
