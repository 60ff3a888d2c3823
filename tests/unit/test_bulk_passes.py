"""Real TensorFlow: bulk passes and stream batches share one set of buckets, traced at load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inferq.core.chunks import decode_results, encode_matrix
from inferq.core.constants import MAX_ABS_FEATURE
from inferq.core.settings import Settings
from tests.support.served import served_regressor
from worker.jobs import score_chunk
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


@pytest.mark.parametrize("compression", ["zstd", "zlib", None])
def test_a_chunk_scores_as_its_rows_do_in_any_compression_and_column_order(
    served: ServedRegressor, compression: str | None
) -> None:
    # zlib and uncompressed chunks are what older producers send: still scored, to the
    # same dollars as the plain float64 path (scale, float32, forward, dollars) gives.
    features = list(served.meta.features)
    x = np.random.default_rng(7).integers(0, 5, (70, len(features))).astype(np.float64)
    x[3, 2], x[9, 0] = np.nan, -2 * MAX_ABS_FEATURE
    good = np.ones(len(x), dtype=bool)
    good[[3, 9]] = False
    shuffled = features[::-1]
    data = encode_matrix(x[:, ::-1], compression)
    result = score_chunk.run(served, "c", shuffled, len(x), data, compression)
    dollars = decode_results(result["earnings_usd_f64"], len(x))
    wire = x.astype(np.float32).astype(np.float64)
    scaled = served.meta.scale_features(wire[good]).astype(np.float32)
    expected, _ = served.runner.infer(scaled, timeout_s=30, bulk=True)
    assert np.array_equal(dollars[good], served.meta.to_dollars(expected))
    assert np.isnan(dollars[~good]).all()
    errors = [(e["row"], e["field"], e["code"]) for e in result["row_errors"]]
    assert errors == [(3, features[2], "not_finite"), (9, features[0], "out_of_range")]
