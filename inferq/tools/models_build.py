"""`inferq models build`: everything the project serves, built offline."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from inferq.core.constants import COURSE_TARGET, DEFAULT_CLASSIFIER
from inferq.core.modelfile import file_version, read_meta
from inferq.errors import ModelFileError
from inferq.tools.sample_data import write_csv

TRAIN_ROWS, TEST_ROWS = 1000, 400


def _kept(out: Path, check: Callable[[Path], object], force: bool) -> tuple[bool, str | None]:
    """(keep the existing file?, a line to print) for a model file that may be rebuilt."""
    if force or not out.exists():
        return False, None
    try:
        check(out)
    except ModelFileError as exc:
        return False, f"{out} is unusable ({exc.message}); rebuilding"
    return True, f"{out} exists (version {file_version(out)}); --force rebuilds it"


def build_regressor(directory: Path, *, force: bool = False) -> Iterator[str]:
    """Generate the sample sales data and train the regressor, unless a valid one exists."""
    from inferq.tools.training import train

    out = directory / "regressor.h5"
    keep, line = _kept(out, read_meta, force)
    if line:
        yield line
    if keep:
        return
    train_csv = write_csv(directory / "sales_data_training.csv", TRAIN_ROWS, seed=0)
    test_csv = write_csv(directory / "sales_data_test.csv", TEST_ROWS, seed=1)
    report = train(train_csv, COURSE_TARGET, out, epochs=50, seed=0, test_csv=test_csv)
    yield f"trained {out} on {report.rows} rows: version {file_version(out)}"
    yield f"test MSE (scaled) {report.test_mse_scaled:.6f}, test MAE ${report.test_mae_usd:,.0f}"


def build_classifier(directory: Path, *, force: bool = False) -> Iterator[str]:
    """Convert the packaged EfficientNet-Lite0 ImageNet weights, unless a valid file exists."""
    from inferq.core.modelfile import read_vision_meta
    from inferq.tools.lite0.convert import build_lite0_model

    out = directory / f"{DEFAULT_CLASSIFIER}.h5"
    keep, line = _kept(out, read_vision_meta, force)
    if line:
        yield line
    if keep:
        return
    build_lite0_model(out)
    yield f"built {out} from the packaged ImageNet weights: version {file_version(out)}"
