"""A Keras model behind one concrete TensorFlow function per bucket size.

Concrete functions are traced once, at load, for each padded batch size; a
call with any other shape is an error rather than a silent retrace (the
"retracing on every new batch size" trap). ``model.predict`` is never used:
its per-call overhead dwarfs a small batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class KerasForward:
    def __init__(
        self,
        keras_model: Any,
        name: str,
        version: str,
        bucket_sizes: tuple[int, ...],
        *,
        jit_compile: bool = False,
    ) -> None:
        import tensorflow as tf

        self.name = name
        self.version = version
        self.bucket_sizes = bucket_sizes
        self.traces = 0
        self.input_shape = tuple(keras_model.input_shape[1:])

        # XLA fuses a small network into one kernel: fewer dispatches per call, which is
        # most of a small model's cost (see README, Benchmarks).
        @tf.function(jit_compile=jit_compile)
        def call(x: Any) -> Any:
            self.traces += 1  # Python side effect: runs only while tracing.
            return keras_model(x, training=False)

        self._by_size = {
            size: call.get_concrete_function(tf.TensorSpec((size, *self.input_shape), tf.float32))
            for size in bucket_sizes
        }
        for size, fn in self._by_size.items():  # first calls allocate; do it before any job
            fn(tf.zeros((size, *self.input_shape), tf.float32))

    def forward(self, batch: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        fn = self._by_size[batch.shape[0]]
        # An explicit tensor skips the function's slower numpy argument conversion.
        return np.asarray(fn(tf.constant(batch, dtype=tf.float32)))
