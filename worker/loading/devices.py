"""Where a worker process's models run: its GPU, GPU memory growth, mixed precision.

``configure`` runs once per process, in the process that loads the models and
before the first one loads (TensorFlow fixes a GPU's memory settings when it
first touches it). Nothing here has run on a GPU: the project's machines have
none, and on a CPU the GPU steps find no devices and do nothing.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from inferq.core.settings import Settings
from inferq.errors import ModelFileError

MIXED_POLICY = "mixed_float16"
OUTPUT_POLICY = "float32"
UNPROBED = "devices=unprobed"  # the start line of a process that loads no models


def configure(settings: Settings) -> str:
    """Pin this process's GPU (INFERQ_GPUS) and let GPU memory grow: once per process,
    before the first model loads (the model registry calls it).

    Returns the start line's fields, e.g. ``devices=GPU:0 cuda_visible_devices=1
    precision=float32``.
    """
    # `inferq worker` gave its processes this environment already; this covers
    # `celery -A worker worker`. CUDA reads it once, when TensorFlow first touches a GPU.
    os.environ.update(settings.cuda_env())
    names = enable_memory_growth()
    precision = MIXED_POLICY if settings.mixed_precision else "float32"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    shown = "unset" if visible is None else visible or '""'  # "": every GPU hidden
    return (
        f"devices={','.join(names) or 'CPU-only'} cuda_visible_devices={shown} "
        f"precision={precision}"
    )


def enable_memory_growth() -> list[str]:
    """Memory growth on every visible GPU; their names (GPU:0, ...), empty on a CPU.

    Without it TensorFlow maps nearly all of a GPU's memory in the first process that
    uses it, and a second worker process on the same GPU runs out of memory.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as exc:
            # Only if something touched the GPU first; the worker still runs, so say so.
            print(f"inferq: memory growth not set on {gpu.name}: {exc}", file=sys.__stderr__)
    return [gpu.name.removeprefix("/physical_device:") for gpu in gpus]


def to_mixed_precision(model: Any, name: str) -> Any:
    """The same network and weights, every layer in mixed_float16 but the outputs.

    A model read from a file carries a float32 policy in each layer's config, so the
    global policy would change nothing: the model is rebuilt from an edited config.
    Outputs stay float32, so a softmax or a regression value is computed in float32.
    A model that cannot be rebuilt is a ModelFileError: the worker stops at start
    rather than serve float32 under a setting that says otherwise.
    """
    try:
        config = model.get_config()
        outputs = _output_layers(config)
        for layer in config["layers"]:
            if "layers" in layer["config"]:
                raise ValueError(f"layer {layer['config']['name']!r} is a nested model")
            if layer["class_name"] != "InputLayer" and layer["config"]["name"] not in outputs:
                layer["config"]["dtype"] = MIXED_POLICY
        mixed = type(model).from_config(config)
        mixed.set_weights(model.get_weights())
    except Exception as exc:
        raise ModelFileError(
            f"INFERQ_MIXED_PRECISION: cannot rebuild {name} in {MIXED_POLICY} "
            f"({type(exc).__name__}: {exc}); unset it to serve in float32"
        ) from None
    _check_policies(mixed, outputs, name)
    return mixed


def _output_layers(config: dict[str, Any]) -> set[str]:
    if "layers" not in config:
        raise ValueError("not a Sequential or functional model (no layer list in its config)")
    if "output_layers" not in config:  # Sequential: its last layer gives the output
        return {config["layers"][-1]["config"]["name"]}
    outputs = config["output_layers"]
    # One output is [name, node, tensor]; several are a list of those.
    return {outputs[0]} if isinstance(outputs[0], str) else {out[0] for out in outputs}


def _check_policies(model: Any, outputs: set[str], name: str) -> None:
    # A layer class that drops the dtype from its config would quietly stay float32.
    wrong = [
        f"{layer.name}={layer.dtype_policy.name}"
        for layer in model.layers
        if type(layer).__name__ != "InputLayer"
        and layer.dtype_policy.name != (OUTPUT_POLICY if layer.name in outputs else MIXED_POLICY)
    ]
    if wrong:
        raise ModelFileError(
            f"INFERQ_MIXED_PRECISION: {name} rebuilt with unexpected dtype policies "
            f"({', '.join(wrong[:5])}); unset it to serve in float32"
        )
