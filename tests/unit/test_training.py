"""Real TensorFlow: training, the saved file, the compiled forward pass, imports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inferq.core.constants import COURSE_FEATURES
from inferq.core.modelfile import file_version, read_meta
from inferq.core.settings import Settings
from inferq.core.tables import read_numeric
from inferq.errors import ModelFileError
from inferq.tools.import_model import import_model
from tests.support.served import served_regressor
from worker.loading.registry import ServedRegressor


@pytest.fixture(scope="module")
def served(regressor_path: Path) -> Iterator[ServedRegressor]:
    settings = Settings.load(
        {
            "INFERQ_REGRESSOR_PATH": str(regressor_path),
            "INFERQ_MAX_BATCH_SIZE": "8",
            "INFERQ_BULK_BATCH_SIZE": "8",
        }
    )
    with served_regressor(settings) as served:
        yield served


def test_the_saved_file_carries_features_and_scalers(regressor_path: Path) -> None:
    meta = read_meta(regressor_path)
    assert meta.features == COURSE_FEATURES
    assert meta.target == "total_earnings" and meta.inputs == "raw"
    assert meta.feature_scaler is not None and meta.feature_scaler.width == 9


def test_predictions_are_dollars_close_to_the_truth(
    served: ServedRegressor, data_dir: Path
) -> None:
    data = read_numeric(data_dir / "test.csv", [*COURSE_FEATURES, "total_earnings"])
    x = served.meta.scale_features(data[:, :-1]).astype(np.float32)
    y, _ = served.runner.infer(x, timeout_s=30)
    dollars = served.meta.to_dollars(y)
    truth = data[:, -1]
    assert 20_000 < dollars.mean() < 300_000
    assert np.mean(np.abs(dollars - truth)) < 0.15 * truth.mean()


def test_compiled_forward_never_retraces(served: ServedRegressor) -> None:
    assert served.forward.bucket_sizes == (1, 2, 4, 8)
    traced = served.forward.traces
    assert traced == len(served.forward.bucket_sizes)
    for rows in (1, 3, 5, 8, 13, 2, 7):
        served.runner.infer(np.zeros((rows, 9), np.float32), timeout_s=30)
    assert served.forward.traces == traced


def _plain_course_model(path: Path, n_features: int = 9) -> Path:
    from inferq.tools.training import build_network

    model = build_network(n_features)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.save(path)
    return path


def test_import_model_records_the_course_scaler(tmp_path: Path) -> None:
    plain = _plain_course_model(tmp_path / "trained_model.h5")
    with pytest.raises(ModelFileError, match="no inferq metadata"):
        read_meta(plain)
    out = import_model(
        plain,
        tmp_path / "imported.h5",
        features=list(COURSE_FEATURES),
        target="total_earnings",
        target_min=-0.1159,
        target_scale=0.0000036968,
    )
    meta = read_meta(out)
    assert meta.inputs == "prescaled" and meta.feature_scaler is None
    assert meta.to_dollars([0.0])[0] == pytest.approx(0.1159 / 0.0000036968)
    settings = Settings.load({"INFERQ_REGRESSOR_PATH": str(out)})
    with served_regressor(settings) as imported:
        assert imported.version == file_version(out)


def test_import_model_refuses_a_wrong_shape(tmp_path: Path) -> None:
    plain = _plain_course_model(tmp_path / "five.h5", n_features=5)
    with pytest.raises(ModelFileError, match="9 features"):
        import_model(
            plain, plain, features=list(COURSE_FEATURES), target="t", target_min=0, target_scale=1
        )


def test_worker_refuses_a_model_whose_shape_disagrees_with_its_metadata(tmp_path: Path) -> None:
    plain = _plain_course_model(tmp_path / "five.h5", n_features=5)
    from inferq.core.modelfile import RegressorMeta, write_meta
    from inferq.core.scaling import MinMax

    write_meta(
        plain,
        RegressorMeta(
            features=COURSE_FEATURES,
            feature_scaler=None,
            target="t",
            target_scaler=MinMax(min=(0.0,), scale=(1.0,)),
            inputs="prescaled",
        ),
    )
    settings = Settings.load({"INFERQ_REGRESSOR_PATH": str(plain)})
    with pytest.raises(ModelFileError, match="maps"), served_regressor(settings):
        pass


def test_train_command_reports_test_errors(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.h5"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "inferq",
            "train",
            str(data_dir / "train.csv"),
            "--target",
            "total_earnings",
            "--out",
            str(out),
            "--epochs",
            "2",
            "--test",
            str(data_dir / "test.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "test MSE (scaled)" in proc.stdout and "test MAE: $" in proc.stdout
    assert read_meta(out).features == COURSE_FEATURES


def test_train_command_names_a_missing_target(data_dir: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "inferq",
            "train",
            str(data_dir / "train.csv"),
            "--target",
            "profit",
            "--out",
            str(tmp_path / "x.h5"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1
    assert "lacks column(s): profit" in proc.stderr


def test_predictions_depend_on_the_batch_only_in_the_last_digits(
    served: ServedRegressor, data_dir: Path
) -> None:
    """The same rows give the same dollars in the same batches; across batch sizes they
    differ by float32 rounding only (docs/delivery.md states the bound measured)."""
    data = read_numeric(data_dir / "test.csv", list(COURSE_FEATURES))
    x = served.meta.scale_features(data[:8]).astype(np.float32)
    alone = np.concatenate([served.forward.forward(x[i : i + 1]) for i in range(8)])
    together = served.forward.forward(x)
    assert np.array_equal(together, served.forward.forward(x))  # same batch: same bits
    dollars_alone, dollars_together = (served.meta.to_dollars(y) for y in (alone, together))
    assert np.max(np.abs(dollars_together - dollars_alone) / dollars_alone) < 1e-6
