"""`inferq import-model`: serve a Keras HDF5 model that was trained elsewhere.

The course's ``trained_model.h5`` holds the network only; its scaler lived in
the training script. This records it in the file, after checking that the
network takes one input per named feature and gives one output.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from inferq.core.modelfile import RegressorMeta, write_meta
from inferq.core.scaling import MinMax


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{what} must be comma-separated numbers, not {text!r}") from None


def build_meta(
    *,
    features: list[str],
    target: str,
    target_min: float,
    target_scale: float,
    feature_min: str | None,
    feature_scale: str | None,
) -> RegressorMeta:
    if (feature_min is None) != (feature_scale is None):
        raise ValueError(
            "give both --feature-min and --feature-scale, or neither (pre-scaled inputs)"
        )
    scaler = None
    if feature_min is not None and feature_scale is not None:
        scaler = MinMax(
            min=_floats(feature_min, "--feature-min"),
            scale=_floats(feature_scale, "--feature-scale"),
        )
    return RegressorMeta(
        features=tuple(features),
        feature_scaler=scaler,
        target=target,
        target_scaler=MinMax(min=(target_min,), scale=(target_scale,)),
        inputs="raw" if scaler else "prescaled",
    )


def import_model(
    source: Path,
    out: Path,
    *,
    features: list[str],
    target: str,
    target_min: float,
    target_scale: float,
    feature_min: str | None = None,
    feature_scale: str | None = None,
) -> Path:
    from worker.loading.keras_files import check_regressor_shape, load_keras

    meta = build_meta(
        features=features,
        target=target,
        target_min=target_min,
        target_scale=target_scale,
        feature_min=feature_min,
        feature_scale=feature_scale,
    )
    check_regressor_shape(load_keras(source), len(features), source)
    if out != source:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out)
    write_meta(out, meta)
    return out
