"""The two image sets of `inferq bench vision`, made from the three shipped photos.

No ImageNet JPEGs are at hand offline, so both sets are built, deterministically
(seeded), from ``inferq/data/images`` (chelsea, coffee, astronaut):

* ``imagenet``: ~500x375 JPEGs as in ImageNet's validation set (one in four
  portrait, 375x500), quality 90: a random crop of 55-100 % of the photo's area
  with some aspect jitter, a horizontal flip half the time, brightness, contrast
  and colour jitter of +-20 %, a bicubic resize, and light grain (sigma 8 levels):
  ~65 kB a file (real ImageNet photos are larger, ~110 kB, with more texture).
* ``phone``: 4032x3024 JPEGs as a 12-megapixel phone camera writes them, quality
  92: the same crop, flip and jitter, a bicubic enlargement, then sensor-like
  grain (Gaussian, sigma 6 levels), without which an eight-fold enlargement is so
  smooth that it decodes far faster than a real photo; every third one is a
  portrait shot stored sideways with EXIF Orientation 6, as phones store them.
  The files come out at ~3.1 MB, as real ones do.

Sets are written once into a cache folder (by generator version and count) and
reused: making 48 phone photos takes about half a minute.
"""

from __future__ import annotations

import io
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from inferq.data import SAMPLE_IMAGES, sample_image

GENERATOR_VERSION = "v1"
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageSet:
    name: str
    size: tuple[int, int]  # landscape width x height
    quality: int
    grain_sigma: float
    portrait_every: int  # every Nth image is a portrait
    exif_portrait: bool  # portraits stored sideways with EXIF Orientation 6 (phones)


IMAGE_SETS = {
    "imagenet": ImageSet("imagenet", (500, 375), 90, 8.0, 4, exif_portrait=False),
    "phone": ImageSet("phone", (4032, 3024), 92, 6.0, 3, exif_portrait=True),
}


def default_cache() -> Path:
    return Path(tempfile.gettempdir()) / "inferq-bench-images" / GENERATOR_VERSION


def ensure_set(name: str, count: int, cache: Path | None = None) -> list[Path]:
    """The first ``count`` images of set ``name``, made where missing."""
    spec = IMAGE_SETS[name]
    folder = (cache or default_cache()) / name
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{name}-{i:04d}.jpg"
        if not path.exists():
            _write_atomically(path, make_image(spec, i))
        paths.append(path)
    return paths


def _write_atomically(path: Path, data: bytes) -> None:
    # Two benchmark runs may fill the cache at once: a reader never sees half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def make_image(spec: ImageSet, index: int) -> bytes:
    """Image ``index`` of ``spec``: the same bytes on every run."""
    rng = random.Random(f"{spec.name}-{index}")
    portrait = index % spec.portrait_every == spec.portrait_every - 1
    width, height = spec.size
    upright = (height, width) if portrait else (width, height)
    with Image.open(sample_image(SAMPLE_IMAGES[index % len(SAMPLE_IMAGES)])) as source:
        img = _jitter(_random_crop(source.convert("RGB"), rng, upright), rng)
    img = img.resize(upright, Image.Resampling.BICUBIC)
    if spec.grain_sigma:
        img = _grain(img, spec.grain_sigma, index)
    exif = Image.Exif()
    if portrait and spec.exif_portrait:
        # Stored turned a quarter counter-clockwise; Orientation 6 tells viewers to turn it back.
        img = img.transpose(Image.Transpose.ROTATE_90)
        exif[EXIF_ORIENTATION] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=spec.quality, exif=exif.tobytes())
    return buf.getvalue()


def _random_crop(img: Image.Image, rng: random.Random, size: tuple[int, int]) -> Image.Image:
    width, height = img.size
    area = rng.uniform(0.55, 1.0) * width * height
    aspect = size[0] / size[1] * rng.uniform(0.85, 1.15)
    crop_w = min(width, round((area * aspect) ** 0.5))
    crop_h = min(height, round((area / aspect) ** 0.5))
    left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
    img = img.crop((left, top, left + crop_w, top + crop_h))
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else img


def _jitter(img: Image.Image, rng: random.Random) -> Image.Image:
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhancer(img).enhance(rng.uniform(0.8, 1.2))
    return img


def _grain(img: Image.Image, sigma: float, seed: int) -> Image.Image:
    noise = np.random.default_rng(seed).normal(0.0, sigma, (img.height, img.width, 3))
    grainy = np.asarray(img, dtype=np.float32) + noise.astype(np.float32)
    return Image.fromarray(np.clip(grainy, 0, 255).astype(np.uint8))
