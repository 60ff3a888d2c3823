"""Keras model files: loaded for inference, their shapes checked before any job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inferq.errors import ModelFileError


def load_keras(path: Path) -> Any:
    """Load a Keras model file for inference; any failure is a ModelFileError naming it."""
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise ModelFileError(
            f"cannot load Keras model {path}: {type(exc).__name__}: {exc}"
        ) from None


def check_regressor_shape(model: Any, n_features: int, path: Path) -> None:
    """A regressor must take one input per named feature and give one output."""
    shape_in, shape_out = tuple(model.input_shape), tuple(model.output_shape)
    if shape_in != (None, n_features) or shape_out != (None, 1):
        raise ModelFileError(
            f"{path} maps {shape_in} -> {shape_out}, "
            f"but {n_features} features -> 1 output is needed"
        )
