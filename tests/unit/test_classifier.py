"""Classifier selection and preprocessing, without any downloaded weights."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inferq.core.settings import Settings
from inferq.errors import ModelFileError
from worker.loading.classifier import (
    KERAS_APPS,
    app_preprocess,
    check_classifier,
    crop_resize,
    load_classifier,
    mode_preprocess,
)

GREY = Image.new("RGB", (300, 200), (128, 128, 128))


def _settings(**values: object) -> Settings:
    return Settings.load({}, **values)


def test_crop_resize_takes_the_centre_and_keeps_0_255() -> None:
    img = Image.new("RGB", (300, 200), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 40, 200))  # a blue band the centre crop leaves out
    x = crop_resize(img, 64)
    assert x.shape == (64, 64, 3) and x.dtype == np.float32
    assert np.allclose(x[..., 0], 255, atol=2) and x[..., 2].max() < 3


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("none", 128.0), ("tf", 128 / 127.5 - 1), ("lite0", 1 / 128)],
)
def test_preprocess_modes(mode: str, expected: float) -> None:
    x = mode_preprocess(mode, 32)(GREY)
    assert x.shape == (32, 32, 3)
    np.testing.assert_allclose(x, expected, atol=1e-5)


def test_caffe_and_torch_modes_follow_keras() -> None:
    caffe = mode_preprocess("caffe", 16)(GREY)
    np.testing.assert_allclose(caffe[0, 0], [128 - 103.939, 128 - 116.779, 128 - 123.68], atol=1e-3)
    torch = mode_preprocess("torch", 16)(GREY)
    np.testing.assert_allclose(torch[0, 0, 0], (128 / 255 - 0.485) / 0.229, atol=1e-4)


def test_each_keras_application_brings_its_own_preprocessing() -> None:
    resnet = app_preprocess("ResNet50", 32)(GREY)  # caffe: BGR, mean-subtracted
    mobilenet = app_preprocess("MobileNetV2", 32)(GREY)  # tf: -1..1
    assert resnet[0, 0, 0] == pytest.approx(128 - 103.939, abs=1e-3)
    assert mobilenet[0, 0, 0] == pytest.approx(128 / 127.5 - 1, abs=1e-5)
    assert set(KERAS_APPS) >= {"ResNet50", "MobileNetV2", "EfficientNetB0"}


def test_unknown_names_and_missing_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="ResNet50"):
        check_classifier(_settings(classifier="ResNet5O"))
    model_file = tmp_path / "mine.h5"
    model_file.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="INFERQ_CLASSIFIER_PREPROCESS"):
        check_classifier(_settings(classifier=str(model_file)))
    with pytest.raises(ModelFileError, match="do not exist"):
        check_classifier(_settings(classifier="MobileNetV2", classifier_weights=tmp_path / "no.h5"))
    with pytest.raises(ModelFileError, match="does not exist"):
        check_classifier(_settings(models_dir=tmp_path))


def test_keras_application_weights_are_never_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keras.src.backend import config

    monkeypatch.setattr(config, "keras_home", lambda: str(tmp_path))  # an empty Keras cache
    with pytest.raises(ModelFileError, match="downloads are off"):
        load_classifier(_settings(classifier="MobileNetV2"))


def test_keras_application_with_a_local_weights_file(tmp_path: Path) -> None:
    import keras

    weights = tmp_path / "mobilenet_v2.weights.h5"
    keras.applications.MobileNetV2(weights=None).save_weights(weights)
    loaded = load_classifier(_settings(classifier="MobileNetV2", classifier_weights=weights))
    x = loaded.preprocess(GREY)
    assert x.shape == (224, 224, 3) and x.min() >= -1.0 and x.max() <= 1.0
    probs = np.asarray(loaded.keras_model(x[None], training=False))[0]
    top = loaded.labels.top_k(probs, 3)
    assert len(top) == 3 and top[0]["wnid"].startswith("n")
    assert loaded.name == "MobileNetV2" and len(loaded.version) == 12


def test_a_users_model_file_with_its_own_labels(tmp_path: Path) -> None:
    import keras

    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    path = tmp_path / "shapes.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.save(path)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["circle", "square", ["n0", "triangle"]]))
    loaded = load_classifier(
        _settings(classifier=str(path), classifier_preprocess="none", classifier_labels=labels)
    )
    x = loaded.preprocess(GREY)
    assert x.shape == (32, 32, 3)
    top = loaded.labels.top_k(np.asarray(loaded.keras_model(x[None]))[0], 5)
    assert {p["label"] for p in top} == {"circle", "square", "triangle"}
    assert loaded.name == "shapes"
