"""Small image files for tests, made in memory: good, odd-but-valid and hostile."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
from PIL import Image

from inferq.data import sample_image


def encode(img: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def photo(name: str = "chelsea") -> bytes:
    return sample_image(name).read_bytes()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height: a decompression bomb's front."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def animated_gif() -> bytes:
    cat = Image.open(io.BytesIO(photo())).convert("P")
    black = Image.new("P", cat.size, 0)
    return encode(cat, "GIF", save_all=True, append_images=[black, black], duration=100)


def sixteen_bit_png() -> bytes:
    grey = np.asarray(Image.open(io.BytesIO(photo())).convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(grey), "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.open(io.BytesIO(photo())).convert("CMYK"), "JPEG")


def rgba_png() -> bytes:
    return encode(Image.open(io.BytesIO(photo())).convert("RGBA"), "PNG")


# ImageNet labels a photo of a cat may get, best first (the sample photo "chelsea").
CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
