"""`inferq models build`: everything the project serves, built offline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from inferq.constants import COURSE_TARGET
from inferq.errors import ModelFileError
from inferq.modelfile import file_version, read_meta
from inferq.sample_data import write_csv

TRAIN_ROWS, TEST_ROWS = 1000, 400


def build_regressor(directory: Path, *, force: bool = False) -> Iterator[str]:
    """Generate the sample sales data and train the regressor, unless a valid one exists."""
    from inferq.training import train

    out = directory / "regressor.h5"
    if out.exists() and not force:
        try:
            read_meta(out)
            yield f"{out} exists (version {file_version(out)}); --force rebuilds it"
            return
        except ModelFileError as exc:
            yield f"{out} is unusable ({exc.message}); rebuilding"
    train_csv = write_csv(directory / "sales_data_training.csv", TRAIN_ROWS, seed=0)
    test_csv = write_csv(directory / "sales_data_test.csv", TEST_ROWS, seed=1)
    report = train(train_csv, COURSE_TARGET, out, epochs=50, seed=0, test_csv=test_csv)
    yield f"trained {out} on {report.rows} rows: version {file_version(out)}"
    yield f"test MSE (scaled) {report.test_mse_scaled:.6f}, test MAE ${report.test_mae_usd:,.0f}"
