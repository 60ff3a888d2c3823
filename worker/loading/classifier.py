"""Which classifier a worker serves, and how it turns an image into its input.

``INFERQ_CLASSIFIER`` is one of:
- ``efficientnet_lite0``: the default, built offline by `inferq models build`;
- a ``keras.applications`` name (ResNet50 as in the course, MobileNetV2, ...) with
  that family's own ``preprocess_input``; weights from ``INFERQ_CLASSIFIER_WEIGHTS``
  or the Keras cache, never downloaded unless ``INFERQ_ALLOW_DOWNLOAD=true``;
- a Keras model file, with ``INFERQ_CLASSIFIER_PREPROCESS`` and, unless it has
  the 1000 ImageNet outputs, ``INFERQ_CLASSIFIER_LABELS``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from inferq.core.constants import DEFAULT_CLASSIFIER
from inferq.core.imagenet import ClassIndex, Prediction, top_k_of
from inferq.core.images import lite0_crop_box, lite0_preprocess
from inferq.core.modelfile import file_version, read_vision_meta
from inferq.core.settings import Settings
from inferq.errors import ModelFileError
from worker.loading.keras_files import load_keras

Preprocess = Callable[[Image.Image], np.ndarray]

# keras.applications constructor -> the module holding its preprocess_input.
KERAS_APPS = {
    "ResNet50": "resnet50",
    "ResNet101": "resnet",
    "MobileNetV2": "mobilenet_v2",
    "MobileNet": "mobilenet",
    "EfficientNetB0": "efficientnet",
    "EfficientNetB1": "efficientnet",
    "InceptionV3": "inception_v3",
    "Xception": "xception",
    "VGG16": "vgg16",
    "DenseNet121": "densenet",
}
# INFERQ_CLASSIFIER_PREPROCESS for a model file: Keras' imagenet_utils modes and ours.
FILE_PREPROCESS = ("lite0", "tf", "torch", "caffe", "none")


class Labels(Protocol):
    def __len__(self) -> int: ...

    def top_k(self, probs: np.ndarray, k: int) -> list[Prediction]: ...


@dataclass(frozen=True)
class LoadedClassifier:
    keras_model: Any
    name: str
    version: str
    preprocess: Preprocess
    labels: Labels
    input_size: int = 224  # the square side the model takes


class LabelList:
    """Labels from a JSON file: ["cat", ...] or [["n02123045", "tabby"], ...]."""

    def __init__(self, entries: list[tuple[str, str]]) -> None:
        self.entries = entries

    @classmethod
    def read(cls, path: Path) -> LabelList:
        try:
            doc = json.loads(path.read_text())
            entries = [(str(e[0]), str(e[1])) if isinstance(e, list) else ("", str(e)) for e in doc]
        except (OSError, ValueError, IndexError, TypeError) as exc:
            raise ModelFileError(f"labels file {path}: {exc}") from None
        return cls(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def top_k(self, probs: np.ndarray, k: int) -> list[Prediction]:
        scores = np.asarray(probs, dtype=np.float64).reshape(-1)
        return top_k_of(scores, k, self.entries.__getitem__)


def crop_resize(img: Image.Image, size: int) -> np.ndarray:
    """Centred crop of 87.5% of the short side, bicubic to size x size, 0..255 float32."""
    box = lite0_crop_box(*img.size)
    resized = img.crop(box).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.float32)


def mode_preprocess(mode: str, size: int) -> Preprocess:
    """Preprocessing by name: lite0, Keras' tf/torch/caffe modes, or none (0..255)."""
    if mode == "lite0" and size == 224:
        return lite0_preprocess
    if mode == "none":
        return lambda img: crop_resize(img, size)
    if mode == "lite0":
        return lambda img: (crop_resize(img, size) - 127.0) / 128.0
    from keras.applications import imagenet_utils

    return lambda img: np.asarray(
        imagenet_utils.preprocess_input(crop_resize(img, size)[None], mode=mode)[0]
    )


def app_preprocess(name: str, size: int) -> Preprocess:
    module = importlib.import_module(f"keras.applications.{KERAS_APPS[name]}")
    return lambda img: np.asarray(module.preprocess_input(crop_resize(img, size)[None])[0])


def classifier_file(settings: Settings) -> Path | None:
    """The model file the setting names (None for a keras.applications name)."""
    if settings.classifier == DEFAULT_CLASSIFIER:
        return settings.models_dir / f"{DEFAULT_CLASSIFIER}.h5"
    if settings.classifier in KERAS_APPS:
        return None
    return Path(settings.classifier)


def check_classifier(settings: Settings) -> None:
    """Cheap checks for a parent process (no TensorFlow): the file and settings exist."""
    path = classifier_file(settings)
    if settings.classifier == DEFAULT_CLASSIFIER and path is not None:
        read_vision_meta(path)
    elif path is None:
        weights = settings.classifier_weights
        if weights is not None and not weights.is_file():
            raise ModelFileError(f"classifier weights {weights} do not exist")
    elif not path.is_file():
        raise ModelFileError(
            f"classifier {settings.classifier!r} is neither efficientnet_lite0, a known "
            f"keras.applications name ({', '.join(KERAS_APPS)}), nor an existing model file"
        )
    elif settings.classifier_preprocess not in FILE_PREPROCESS:
        raise ModelFileError(
            f"classifier file {path} needs INFERQ_CLASSIFIER_PREPROCESS, one of {FILE_PREPROCESS}"
        )


def check_classifier_shape(model: Any, n_labels: int, path: Path) -> None:
    """A classifier must take (height, width, 3) images and give one score per label.

    Checked at load so that a wrong file stops the worker at start, rather than failing
    every job (wrong input) or labelling scores with the wrong names (wrong output)."""
    shape_in, shape_out = tuple(model.input_shape), tuple(model.output_shape)
    if len(shape_in) != 4 or shape_in[-1] != 3 or shape_out != (None, n_labels):
        raise ModelFileError(
            f"{path} maps {shape_in} -> {shape_out}, "
            f"but images (None, height, width, 3) -> {n_labels} scores (one per label) are needed"
        )


def _weights_hash(model: Any) -> str:
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()[:12]


@contextlib.contextmanager
def _downloads(allowed: bool, name: str) -> Iterator[None]:
    """Refuse Keras' weight download (a hang or a failure behind a firewall) unless allowed."""
    if allowed:
        yield
        return
    from keras.src.utils import file_utils

    def refuse(url: str, *_: Any, **__: Any) -> None:
        raise ModelFileError(
            f"weights for {name} are not in the Keras cache and downloads are off ({url}); "
            "set INFERQ_CLASSIFIER_WEIGHTS to a local file or INFERQ_ALLOW_DOWNLOAD=true"
        )

    original = file_utils.urlretrieve
    file_utils.urlretrieve = refuse
    try:
        yield
    finally:
        file_utils.urlretrieve = original


def load_classifier(settings: Settings) -> LoadedClassifier:
    check_classifier(settings)
    path = classifier_file(settings)
    name = settings.classifier
    if name == DEFAULT_CLASSIFIER and path is not None:
        model = load_keras(path)
        classes = ClassIndex.load()
        check_classifier_shape(model, len(classes), path)
        return LoadedClassifier(model, name, file_version(path), lite0_preprocess, classes)
    if path is None:
        return _load_app(settings)
    model = load_keras(path)
    size = int(model.input_shape[1] or 224)
    labels: Labels = (
        LabelList.read(settings.classifier_labels)
        if settings.classifier_labels
        else ClassIndex.load()
    )
    check_classifier_shape(model, len(labels), path)
    assert settings.classifier_preprocess is not None
    preprocess = mode_preprocess(settings.classifier_preprocess, size)
    return LoadedClassifier(model, path.stem, file_version(path), preprocess, labels, size)


def _load_app(settings: Settings) -> LoadedClassifier:
    import keras

    name = settings.classifier
    constructor = getattr(keras.applications, name)
    if settings.classifier_weights is not None:
        model = constructor(weights=None)
        try:
            model.load_weights(settings.classifier_weights)
        except Exception as exc:
            raise ModelFileError(
                f"cannot load {settings.classifier_weights} into {name}: {exc}"
            ) from None
    else:
        with _downloads(settings.allow_download, name):
            model = constructor(weights="imagenet")
    size = int(model.input_shape[1] or 224)
    return LoadedClassifier(
        model, name, _weights_hash(model), app_preprocess(name, size), ClassIndex.load(), size
    )
