"""EfficientNet-Lite0 as a plain Keras functional model, filled from a state dict.

Lite0 is EfficientNet-B0's stage table with the TFLite-friendly changes:
no squeeze-excitation, ReLU6 instead of swish, stem (32) and head (1280)
widths fixed. The weights come from an EfficientNet-PyTorch style state dict
(``_conv_stem``, ``_blocks.N._expand_conv``, ...) converted from the original
TensorFlow checkpoint, so the model must pad like TensorFlow: Keras'
``padding="same"`` puts the odd extra pixel of a stride-2 convolution at the
bottom/right, exactly as TF did in training (symmetric padding shifts every
stride-2 feature map by half a pixel and costs accuracy).

Only built-in Keras layers are used, so ``keras.models.load_model`` reads the
saved file with no custom objects. Dropout is left out: it is the identity
at inference and this model is never trained here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from inferq.core.constants import DEFAULT_CLASSIFIER as MODEL_NAME
from inferq.core.imagenet import NUM_CLASSES
from inferq.core.images import LITE0_SIZE as INPUT_SIZE

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPSILON = 1e-3  # the TF checkpoint's value; torch's default 1e-5 would be wrong
# Explicit, so a user's keras.json saying channels_first cannot reshape the network.
_NHWC = {"data_format": "channels_last"}


@dataclass(frozen=True)
class Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    channels_out: int


# EfficientNet-B0's table (width and depth multipliers 1.0 for Lite0).
LITE0_STAGES: tuple[Stage, ...] = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)


_Kind = Literal["conv", "depthwise", "bn", "dense"]


class StateDictMismatch(ValueError):
    """The state dict does not fit the Lite0 architecture."""


class _StateReader:
    """Hands out state-dict tensors once each, so leftovers can be detected."""

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        # BatchNorm's step counter has no Keras counterpart and no effect on inference.
        self._left = {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}

    def take(self, key: str) -> np.ndarray:
        try:
            return np.asarray(self._left.pop(key), dtype=np.float32)
        except KeyError:
            raise StateDictMismatch(f"state dict lacks {key!r} (or it was used twice)") from None

    def check_all_used(self) -> None:
        if self._left:
            raise StateDictMismatch(f"unused state dict tensors: {sorted(self._left)[:10]}")


def _conv_kernel(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))  # OIHW -> HWIO


def _depthwise_kernel(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 0, 1))  # (C, 1, H, W) -> (H, W, C, 1)


class _Builder:
    """Creates layers and records which state-dict tensors each one takes."""

    def __init__(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF reads it once, at import
        import keras

        self.keras = keras
        self.plan: list[tuple[Any, str, _Kind]] = []

    def conv(
        self, x: Any, name: str, key: str, *, filters: int, kernel: int = 1, stride: int = 1
    ) -> Any:
        layer = self.keras.layers.Conv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False, **_NHWC, name=name
        )
        self.plan.append((layer, key, "conv"))
        return layer(x)

    def depthwise(self, x: Any, name: str, key: str, *, kernel: int, stride: int) -> Any:
        layer = self.keras.layers.DepthwiseConv2D(
            kernel, strides=stride, padding="same", use_bias=False, **_NHWC, name=name
        )
        self.plan.append((layer, key, "depthwise"))
        return layer(x)

    def bn(self, x: Any, name: str, key: str, relu6: bool) -> Any:
        layer = self.keras.layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, name=name)
        self.plan.append((layer, key, "bn"))
        x = layer(x)
        return self.keras.layers.ReLU(6.0, name=f"{name}_relu6")(x) if relu6 else x

    def block(self, x: Any, index: int, stage: Stage, c_in: int, stride: int) -> Any:
        name, key = f"block{index:02d}", f"_blocks.{index}"
        shortcut = x
        if stage.expand != 1:
            x = self.conv(
                x, f"{name}_expand_conv", f"{key}._expand_conv", filters=c_in * stage.expand
            )
            x = self.bn(x, f"{name}_expand_bn", f"{key}._bn0", relu6=True)
        x = self.depthwise(
            x, f"{name}_dwconv", f"{key}._depthwise_conv", kernel=stage.kernel, stride=stride
        )
        x = self.bn(x, f"{name}_dw_bn", f"{key}._bn1", relu6=True)
        x = self.conv(x, f"{name}_project_conv", f"{key}._project_conv", filters=stage.channels_out)
        x = self.bn(x, f"{name}_project_bn", f"{key}._bn2", relu6=False)
        # Identity skip; EfficientNet's drop-connect on it is training-only.
        if stride == 1 and c_in == stage.channels_out:
            x = self.keras.layers.Add(name=f"{name}_add")([x, shortcut])
        return x


def _weights_for(kind: _Kind, key: str, reader: _StateReader) -> list[np.ndarray]:
    if kind == "conv":
        return [_conv_kernel(reader.take(f"{key}.weight"))]
    if kind == "depthwise":
        return [_depthwise_kernel(reader.take(f"{key}.weight"))]
    if kind == "bn":
        parts = ("weight", "bias", "running_mean", "running_var")
        return [reader.take(f"{key}.{p}") for p in parts]
    if kind == "dense":
        return [reader.take(f"{key}.weight").T, reader.take(f"{key}.bias")]
    raise AssertionError(kind)


def _assign(plan: list[tuple[Any, str, _Kind]], reader: _StateReader) -> None:
    for layer, key, kind in plan:
        values = _weights_for(kind, key, reader)
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise StateDictMismatch(f"{key} -> layer {layer.name}: shapes {got} != {expected}")
        layer.set_weights(values)
    reader.check_all_used()


def _body(b: _Builder, x: Any) -> Any:
    x = b.conv(x, "stem_conv", "_conv_stem", filters=STEM_CHANNELS, kernel=3, stride=2)
    x = b.bn(x, "stem_bn", "_bn0", relu6=True)
    index, c_in = 0, STEM_CHANNELS
    for stage in LITE0_STAGES:
        for repeat in range(stage.repeats):
            x = b.block(x, index, stage, c_in, stage.stride if repeat == 0 else 1)
            index, c_in = index + 1, stage.channels_out
    x = b.conv(x, "head_conv", "_conv_head", filters=HEAD_CHANNELS)
    return b.bn(x, "head_bn", "_bn1", relu6=True)


def build_lite0(state: dict[str, np.ndarray]) -> Any:
    """Build EfficientNet-Lite0 and load ``state`` into it; returns a keras.Model.

    Input: (batch, 224, 224, 3) float32, already preprocessed (see
    ``preprocess.lite0_preprocess``). Output: (batch, 1000) softmax
    probabilities. Raises StateDictMismatch if a tensor is missing, has the
    wrong shape or is left over.
    """
    b = _Builder()
    keras = b.keras
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), dtype="float32", name="image")
    x = _body(b, inputs)
    x = keras.layers.GlobalAveragePooling2D(**_NHWC, name="avg_pool")(x)
    dense = keras.layers.Dense(NUM_CLASSES, name="logits")
    b.plan.append((dense, "_fc", "dense"))
    x = dense(x)
    outputs = keras.layers.Softmax(name="probs", dtype="float32")(x)
    model = keras.Model(inputs, outputs, name=MODEL_NAME)
    _assign(b.plan, _StateReader(state))
    return model
