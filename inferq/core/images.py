"""Untrusted image bytes -> RGB Pillow image -> model input, with Pillow and numpy only.

Decoding (``decode_image``) and model preprocessing (``lite0_preprocess``)
are separate steps: every model shares the first, each model family brings
its own second.

Decoding rules, all deliberate:

* Only an allowlist of formats is tried (JPEG, PNG, GIF, WebP, BMP by
  default). Pillow can open many more, some through external programs (EPS
  runs Ghostscript) or large native decoders (TIFF); callers that want them
  pass ``formats``.
* Size is checked twice before any pixel is decoded: the byte length, then
  the width x height that the header declares, against this call's
  ``max_pixels``. Pillow's process-global guard (``Image.MAX_IMAGE_PIXELS``)
  is left alone as a backstop: its error maps to ``too_many_pixels`` too (so
  a ``max_pixels`` above twice Pillow's limit has no effect).
* No warning filter is touched (``warnings.catch_warnings`` is process-wide
  state and decoding runs in several threads). Pillow's warnings therefore
  follow the process's warning configuration: by default they are printed
  and decoding goes on (the image is rejected by ``max_pixels`` anyway if
  Pillow found it large); where warnings are errors, its bomb warning
  becomes ``too_many_pixels`` and its UserWarnings about damaged files
  ("malformed MPO", "Invalid APNG") become ``truncated_image``.
* EXIF orientation is applied (``ImageOps.exif_transpose``), so a phone photo
  is classified upright; broken EXIF data is ignored, not an error.
* Animated images (GIF, APNG, WebP) give their first frame.
* Transparency is composited onto white: a transparent background is
  usually "nothing", and white is what a viewer shows; dropping the alpha
  channel instead would expose whatever colour the encoder left in
  transparent pixels (often black, sometimes garbage).
* 16-bit greyscale (``I;16``, ``I``) is scaled to 8 bits by its full range
  (65535), not clipped at 255, so a 16-bit PNG keeps its look.
* CMYK, palette, greyscale, LA and the rest go through Pillow's own
  conversion to RGB (embedded ICC profiles are not applied).
* A JPEG can be decoded at reduced size (``min_short_side``): libjpeg scales by
  1/2, 1/4 or 1/8 while decoding (Pillow's ``draft``), by the largest factor that
  keeps the short side at least ``min_short_side``. The model crops 87.5 % of the
  short side and resizes it to 224, so 256 loses nothing it would keep; a 12 MP
  phone photo decodes at 1/8 (504x378) for a fraction of the cost. Other formats
  are decoded at full size.
* Memory: each step lets go of its input as soon as it has its output, and no
  step makes more than one full-size copy at a time (16-bit images are scaled in
  stripes, transparency is pasted onto white through its own alpha band, EXIF
  turns happen in place), so ``decode_bytes_needed`` can say beforehand how much
  an image will take: the worker's decode budget is counted in it.
"""

from __future__ import annotations

import io
import math
import struct
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
# Multi-picture camera JPEGs ("MPO") come in through the JPEG opener.
DEFAULT_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP")

LITE0_SIZE = 224
LITE0_CROP_FRACTION = 224 / 256  # evaluation crop: centred square, 87.5% of the short side
LITE0_MEAN = 127.0
LITE0_STD = 128.0
# The most bytes decoding and preprocessing hold per decoded pixel, whatever the mode:
# the source, one converted copy, the crop (tests/unit/test_image_memory.py measures
# 36-megapixel images of every mode). Pillow's WebP decoder hands over a full-size
# buffer and copies it: twice as much.
PEAK_BYTES_PER_PIXEL = 8
PEAK_BYTES_PER_PIXEL_BY_FORMAT = {"WEBP": 17}

ImageErrorCode = Literal[
    "empty_image",  # zero bytes
    "too_many_bytes",  # more than max_bytes
    "not_an_image",  # no allowed format recognises the bytes
    "too_many_pixels",  # declared width x height over max_pixels (decompression bomb)
    "truncated_image",  # a recognised format whose header or pixel data is cut off or corrupt
    "unsupported_image",  # decoded, but its mode cannot be turned into RGB
]

# What Pillow's decoders raise for hostile or damaged input (besides its own classes).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_STRIPE_ROWS = 256
_REDUCIBLE = ("JPEG", "MPO")  # formats whose decoder can scale down while decoding


class ImageError(ValueError):
    """Bytes that cannot be used as an image; ``code`` says why, for the job's error."""

    def __init__(self, code: ImageErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: ImageErrorCode = code
        self.message = message


def _open(data: bytes, max_pixels: int, formats: tuple[str, ...]) -> Image.Image:
    """Identify the image and check its declared size; no pixel is decoded yet."""
    try:
        img = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("too_many_pixels", str(exc)) from None
    except UnidentifiedImageError:
        raise ImageError("not_an_image", f"not an image in {', '.join(formats)}") from None
    except (*_DECODE_ERRORS, UserWarning) as exc:  # a recognised format, its header cut off
        raise ImageError(
            "truncated_image", f"image header is truncated or corrupt: {exc}"
        ) from None
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError("not_an_image", f"the image declares a size of {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(
            "too_many_pixels", f"{width}x{height} = {width * height} pixels > {max_pixels}"
        )
    return img


def _load_first_frame(img: Image.Image) -> None:
    try:
        img.seek(0)  # animated formats: the first frame only
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("too_many_pixels", str(exc)) from None  # a frame larger than declared
    except (*_DECODE_ERRORS, UserWarning) as exc:
        # Pillow says "image file is truncated" or "broken data stream" for cut-off files.
        raise ImageError("truncated_image", f"image data is truncated or corrupt: {exc}") from None


def _upright(img: Image.Image) -> None:
    """Turn the image as its EXIF orientation says, in place: without an orientation,
    ``exif_transpose`` would otherwise return a full-size copy of the same pixels."""
    try:
        ImageOps.exif_transpose(img, in_place=True)
    except (*_DECODE_ERRORS, KeyError, UserWarning):  # corrupt EXIF: keep the pixels as stored
        return


def _sixteen_to_eight(img: Image.Image) -> Image.Image:
    """16-bit greyscale to 8 bits by its full range: round(v / 257), in stripes of rows
    so that no full-size wider copy is made (float64 here took 16 bytes a pixel)."""
    src = np.asarray(img)  # uint16 for I;16, int32 for I (values beyond 65535 saturate)
    out = np.empty(src.shape, dtype=np.uint8)
    for top in range(0, src.shape[0], _STRIPE_ROWS):
        stripe = np.clip(src[top : top + _STRIPE_ROWS], 0, 65535).astype(np.uint32)
        out[top : top + _STRIPE_ROWS] = (stripe + 128) // 257
    del src
    return Image.fromarray(out, "L")


def _release(old: Image.Image, new: Image.Image) -> Image.Image:
    """``new``, with ``old``'s pixels freed now rather than when the caller lets go."""
    if new is not old:
        old.close()
    return new


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in _SIXTEEN_BIT_MODES:
        img = _release(img, _sixteen_to_eight(img))
    elif img.mode == "F":
        img = _release(img, img.convert("L"))  # clips to 0..255
    if img.mode in ("P", "PA", "RGBa", "La") or ("transparency" in img.info and img.mode != "RGBA"):
        img = _release(img, img.convert("RGBA"))
    if img.mode in ("RGBA", "LA"):
        # Onto white, with the alpha band as the paste mask: the same as compositing
        # over an opaque white background, without a full-size RGBA background copy.
        rgb = Image.new("RGB", img.size, (255, 255, 255))
        rgb.paste(img, mask=img)
        return _release(img, rgb)
    return img if img.mode == "RGB" else _release(img, img.convert("RGB"))


def open_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
    min_short_side: int | None = None,
) -> Image.Image:
    """Identify untrusted image bytes and check their size; no pixel is decoded yet.

    With ``min_short_side``, a JPEG is set to decode at the smallest scale that keeps
    its short side at least that long: ``img.size`` is then the size it will have, so
    a caller can reserve memory for it before ``finish_decode``."""
    if not data:
        raise ImageError("empty_image", "no image bytes")
    if len(data) > max_bytes:
        raise ImageError("too_many_bytes", f"{len(data)} bytes > {max_bytes}")
    img = _open(data, max_pixels, formats)
    if min_short_side and img.format in _REDUCIBLE and min(img.size) >= 2 * min_short_side:
        img.draft(None, (min_short_side, min_short_side))  # scale: short side // this
    return img


def decode_bytes_needed(img: Image.Image) -> int:
    """The most memory decoding and preprocessing this opened image may take, in bytes
    (after any reduced-size setting: ``img.size`` is what will be decoded)."""
    per_pixel = PEAK_BYTES_PER_PIXEL_BY_FORMAT.get(img.format or "", PEAK_BYTES_PER_PIXEL)
    return img.width * img.height * per_pixel


def finish_decode(img: Image.Image) -> Image.Image:
    """An opened image's first frame, decoded, upright and RGB (ImageError if it cannot be)."""
    _load_first_frame(img)
    _upright(img)
    try:
        return _to_rgb(img)
    except _DECODE_ERRORS as exc:
        raise ImageError("unsupported_image", f"cannot convert {img.mode} to RGB: {exc}") from None


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
    min_short_side: int | None = None,
) -> Image.Image:
    """Decode untrusted image bytes into an upright RGB image (first frame if animated).

    Raises ImageError with code ``empty_image``, ``too_many_bytes``,
    ``not_an_image``, ``too_many_pixels``, ``truncated_image`` or
    ``unsupported_image``; a small hostile file cannot make it allocate a
    huge image.
    """
    img = open_image(
        data,
        max_bytes=max_bytes,
        max_pixels=max_pixels,
        formats=formats,
        min_short_side=min_short_side,
    )
    return finish_decode(img)


def source_short_side(size: int) -> int:
    """The shortest source side the evaluation crop needs for a ``size`` x ``size`` input
    (256 for 224): decoding below it would throw away pixels the model uses."""
    return math.ceil(size / LITE0_CROP_FRACTION)


def lite0_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The evaluation crop: a centred square of side int(224/256 * short side)."""
    side = max(1, int(LITE0_CROP_FRACTION * min(width, height)))
    left = (width - side) // 2
    top = (height - side) // 2
    return left, top, left + side, top + side


def lite0_preprocess(img: Image.Image) -> np.ndarray:
    """RGB image -> (224, 224, 3) float32 for EfficientNet-Lite0.

    Centre crop (``lite0_crop_box``), bicubic resize to 224x224, then
    ``(x - 127) / 128`` on 0..255 values: the normalisation the Lite models
    were trained with.
    """
    if img.mode != "RGB":
        raise ValueError(f"lite0_preprocess needs an RGB image, got mode {img.mode}")
    # Crop first, then resize: resizing with box= would let the bicubic filter read
    # pixels just outside the crop, unlike the reference evaluation.
    resized = img.crop(lite0_crop_box(*img.size)).resize(
        (LITE0_SIZE, LITE0_SIZE), Image.Resampling.BICUBIC
    )
    arr = np.asarray(resized, dtype=np.float32)
    return (arr - LITE0_MEAN) / LITE0_STD
