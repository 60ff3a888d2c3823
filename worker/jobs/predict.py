"""``inferq.predict_earnings`` and ``inferq.regressor_info``: rows of raw features in,
dollars out.

A job's rows are validated and scaled before they reach the batch queue, so a bad
job fails alone; small jobs take this module's pieces through the direct path
(worker.celeryapp.direct), larger ones run ``run`` in a pool thread.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from inferq.core.contract import ModelInfo, RegressorInfo
from worker.engine.runner import BatchOutput
from worker.jobs.checks import batch_info, to_ms
from worker.loading.registry import ServedRegressor


def inputs(served: ServedRegressor, rows: Any) -> np.ndarray:
    """A job's rows, validated and scaled: what the model takes (InvalidInput if bad)."""
    return served.meta.scale_features(served.validator.validate(rows)).astype(np.float32)


def result(served: ServedRegressor, parts: list[BatchOutput], started: float) -> dict[str, Any]:
    """The PredictResult of a job whose rows ran in ``parts``."""
    outputs = parts[0].values if len(parts) == 1 else np.concatenate([p.values for p in parts])
    return {
        "earnings_usd": served.meta.to_dollars(outputs).tolist(),
        "model": {"name": served.name, "version": served.version},
        "batch": batch_info(parts),
        "timings_ms": {
            "batch_wait_ms": round(sum(p.wait_ms for p in parts), 3),
            "inference_ms": round(sum(p.inference_ms for p in parts), 3),
            "total_ms": to_ms(time.monotonic() - started),
        },
    }


def run(served: ServedRegressor, rows: Any) -> dict[str, Any]:
    """The whole job in the calling thread: queue its rows, wait for its passes."""
    started = time.monotonic()
    futures = served.runner.submit(inputs(served, rows))
    parts = served.runner.wait(futures, served.timeout_s)
    return result(served, parts, started)


def info(served: ServedRegressor) -> dict[str, Any]:
    """What the serving regressor expects: features, target, inputs, version."""
    meta = served.meta
    return RegressorInfo(
        model=ModelInfo(name=served.name, version=served.version),
        features=list(meta.features),
        target=meta.target,
        inputs=meta.inputs,
    ).model_dump()
