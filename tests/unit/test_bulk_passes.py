"""Real TensorFlow: bulk passes and stream batches share one set of buckets, traced at load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inferq.core.settings import Settings
from tests.support.served import served_regressor
from worker.loading.registry import ServedRegressor


@pytest.fixture(scope="module")
def served(regressor_path: Path) -> Iterator[ServedRegressor]:
    settings = Settings.load(
        {
            "INFERQ_REGRESSOR_PATH": str(regressor_path),
            "INFERQ_MAX_BATCH_SIZE": "6",
            "INFERQ_BULK_BATCH_SIZE": "32",
        }
    )
    with served_regressor(settings) as served:
        yield served


def test_every_bucket_up_to_the_bulk_pass_is_traced_at_load_and_none_later(
    served: ServedRegressor,
) -> None:
    # A full stream batch (6) pads to itself, a bulk pass to its own size.
    assert served.forward.bucket_sizes == (1, 2, 4, 6, 8, 16, 32)
    assert served.forward.traces == len(served.forward.bucket_sizes)
    for rows in (1, 3, 6, 13):
        served.runner.infer(np.zeros((rows, 9), np.float32), timeout_s=30)
    for rows in (1, 20, 32, 33, 100):
        served.runner.infer(np.zeros((rows, 9), np.float32), timeout_s=30, bulk=True)
    assert served.forward.traces == len(served.forward.bucket_sizes)


def test_bulk_rows_run_in_passes_of_the_bulk_size_with_the_stream_answers(
    served: ServedRegressor,
) -> None:
    x = np.random.default_rng(3).random((100, 9), dtype=np.float32)
    bulk, parts = served.runner.infer(x, timeout_s=30, bulk=True)
    stream, stream_parts = served.runner.infer(x, timeout_s=30)
    assert [p.batch_rows for p in parts] == [32, 32, 32, 4]
    assert max(p.batch_rows for p in stream_parts) <= 6
    np.testing.assert_allclose(bulk, stream, rtol=1e-5, atol=1e-3)
