"""The regressor's metadata, stored inside its HDF5 file.

Keras writes the network; we add two root attributes (``inferq_meta``, a JSON
document, and ``inferq_meta_schema``) holding feature names and scalers, so a
model file carries everything needed to turn raw features into dollars.
Reading them needs only h5py, so a parent process can check a model file
without importing TensorFlow.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal, TypeVar

import h5py
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from inferq.constants import H5_META_ATTR, H5_META_SCHEMA_ATTR, H5_META_SCHEMA_VERSION
from inferq.errors import ModelFileError
from inferq.scaling import Array, MinMax


class RegressorMeta(BaseModel):
    """What turns a row of raw named features into a dollar prediction."""

    model_config = ConfigDict(frozen=True)

    name: str = "regressor"
    features: tuple[str, ...]
    # None: the model was trained on pre-scaled inputs and jobs must send them so.
    feature_scaler: MinMax | None
    target: str
    target_scaler: MinMax
    inputs: Literal["raw", "prescaled"] = "raw"

    @model_validator(mode="after")
    def _consistent(self) -> RegressorMeta:
        if len(set(self.features)) != len(self.features) or not self.features:
            raise ValueError("features must be non-empty and unique")
        if self.feature_scaler is not None and self.feature_scaler.width != len(self.features):
            raise ValueError("feature_scaler needs one entry per feature")
        if self.target_scaler.width != 1:
            raise ValueError("target_scaler needs exactly one entry")
        if (self.inputs == "raw") != (self.feature_scaler is not None):
            raise ValueError("inputs='raw' needs a feature_scaler; 'prescaled' must have none")
        return self

    def scale_features(self, raw: Array) -> Array:
        return raw if self.feature_scaler is None else self.feature_scaler.transform(raw)

    def to_dollars(self, scaled_target: Array) -> Array:
        return self.target_scaler.inverse(np.asarray(scaled_target).reshape(-1, 1)).reshape(-1)


def write_meta(path: Path, meta: RegressorMeta) -> None:
    with h5py.File(path, "a") as f:
        f.attrs[H5_META_ATTR] = meta.model_dump_json()
        f.attrs[H5_META_SCHEMA_ATTR] = H5_META_SCHEMA_VERSION


M = TypeVar("M", bound=BaseModel)


def read_h5_meta(
    path: Path, attr: str, schema_attr: str, schema: int, model: type[M], missing: str
) -> M:
    """A model file's JSON metadata attribute, validated; every failure is a ModelFileError
    naming the file. h5py only: no TensorFlow, so a parent process can call it."""
    if not path.is_file():
        raise ModelFileError(
            f"model file {path} does not exist (build it with `inferq models build`)"
        )
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get(attr)
            found = f.attrs.get(schema_attr)
            found = None if found is None else int(found)
            has_weights = "model_weights" in f or "layers" in f
    except OSError as exc:
        raise ModelFileError(f"model file {path} is not a readable HDF5 file: {exc}") from None
    if raw is None:
        raise ModelFileError(f"model file {path} has no {attr} attribute: {missing}")
    if found != schema:
        raise ModelFileError(f"model file {path} has {attr} schema {found}, expected {schema}")
    if not has_weights:
        raise ModelFileError(f"model file {path} holds no Keras weights")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ModelFileError(f"model file {path} has invalid {attr}: {exc}") from None


def read_meta(path: Path) -> RegressorMeta:
    """The regressor's features and scalers from its file."""
    return read_h5_meta(
        path,
        H5_META_ATTR,
        H5_META_SCHEMA_ATTR,
        H5_META_SCHEMA_VERSION,
        RegressorMeta,
        "no inferq metadata; record its scaler with `inferq import-model`",
    )


def file_version(path: Path) -> str:
    """The model version: the first 12 hex digits of the file's SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]
