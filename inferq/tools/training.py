"""Train the course's earnings network and save it with its scaler inside.

TensorFlow is imported inside the functions: importing this module must stay
cheap for the CLI and must never initialise TensorFlow in a Celery parent.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferq.core.modelfile import RegressorMeta, write_meta
from inferq.core.scaling import MinMax
from inferq.core.tables import read_header, read_numeric, require_columns


@dataclass(frozen=True)
class TrainReport:
    path: Path
    rows: int
    final_loss: float
    test_mse_scaled: float | None = None
    test_mae_usd: float | None = None


def build_network(n_features: int) -> Any:
    """The course's network: Dense 50 -> 100 -> 50 (relu) -> 1 (linear), MSE, Adam."""
    import keras

    model = keras.Sequential(
        [
            keras.Input(shape=(n_features,), name="features"),
            keras.layers.Dense(50, activation="relu", name="layer_1"),
            keras.layers.Dense(100, activation="relu", name="layer_2"),
            keras.layers.Dense(50, activation="relu", name="layer_3"),
            keras.layers.Dense(1, activation="linear", name="output_layer"),
        ]
    )
    model.compile(loss="mean_squared_error", optimizer="adam")
    return model


def train(
    csv_path: Path,
    target: str,
    out: Path,
    *,
    epochs: int = 50,
    seed: int = 0,
    test_csv: Path | None = None,
) -> TrainReport:
    import keras

    header = read_header(csv_path)
    require_columns(csv_path, header, [target])
    features = tuple(name for name in header if name != target)
    data = read_numeric(csv_path, [*features, target])
    meta = RegressorMeta(
        features=features,
        feature_scaler=MinMax.fit(data[:, :-1]),
        target=target,
        target_scaler=MinMax.fit(data[:, -1:]),
    )
    keras.utils.set_random_seed(seed)
    model = build_network(len(features))
    x = meta.scale_features(data[:, :-1]).astype(np.float32)
    y = meta.target_scaler.transform(data[:, -1:]).astype(np.float32)
    history = model.fit(x, y, epochs=epochs, batch_size=32, shuffle=True, verbose=0)
    save_with_meta(model, out, meta)
    report = TrainReport(out, len(data), float(history.history["loss"][-1]))
    if test_csv is not None:
        mse, mae = evaluate(model, meta, test_csv)
        report = TrainReport(out, len(data), report.final_loss, mse, mae)
    return report


def evaluate(model: Any, meta: RegressorMeta, test_csv: Path) -> tuple[float, float]:
    """Test MSE on the scaled target (the course's number) and MAE in dollars."""
    data = read_numeric(test_csv, [*meta.features, meta.target])
    x = meta.scale_features(data[:, :-1]).astype(np.float32)
    y_scaled = meta.target_scaler.transform(data[:, -1:]).reshape(-1)
    pred_scaled = np.asarray(model(x, training=False)).reshape(-1)
    mse = float(np.mean((pred_scaled - y_scaled) ** 2))
    mae = float(np.mean(np.abs(meta.to_dollars(pred_scaled) - data[:, -1])))
    return mse, mae


def save_with_meta(model: Any, out: Path, meta: RegressorMeta) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Keras 3 calls HDF5 "legacy"; it is the format this project promises.
        warnings.simplefilter("ignore", UserWarning)
        model.save(out)
    write_meta(out, meta)
