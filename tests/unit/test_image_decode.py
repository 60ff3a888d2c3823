"""Untrusted image bytes to model input (inferq.core.images): crop math, decode errors,
and every mode a camera or an editor writes, made upright and RGB."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageSequence

from inferq.core.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    ImageError,
    decode_image,
    lite0_crop_box,
    lite0_preprocess,
)
from tests.support import photos as imagegen

_encode = imagegen.encode
_png_claiming = imagegen.png_claiming


def _photo(name: str) -> Image.Image:
    return Image.open(io.BytesIO(imagegen.photo(name))).convert("RGB")


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
