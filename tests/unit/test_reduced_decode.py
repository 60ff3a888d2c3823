"""JPEGs decoded at the size the model needs (inferq.core.images, ``min_short_side``):
the sizes chosen, EXIF orientation still applied, other formats untouched, and the
labels of the real Lite0 model on the shipped photos enlarged to phone size."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inferq.bench.vision_local import agreement
from inferq.core.images import decode_image, lite0_preprocess, source_short_side
from inferq.core.settings import Settings
from inferq.data import SAMPLE_IMAGES
from tests.support import photos as imagegen

PHONE = (4032, 3024)
SHORT = source_short_side(224)


def _phone_jpeg(name: str, *, sideways: bool = False) -> bytes:
    """A shipped photo enlarged to 12 megapixels; ``sideways``: stored turned a quarter,
    with EXIF Orientation 6, as phones store portrait shots."""
    img = Image.open(io.BytesIO(imagegen.photo(name))).convert("RGB")
    exif = Image.Exif()
    if sideways:
        img = img.resize((PHONE[1], PHONE[0]), Image.Resampling.BICUBIC)
        img = img.transpose(Image.Transpose.ROTATE_90)
        exif[0x0112] = 6
    else:
        img = img.resize(PHONE, Image.Resampling.BICUBIC)
    return imagegen.encode(img, "JPEG", quality=92, exif=exif.tobytes())


def test_the_short_side_the_lite0_crop_needs() -> None:
    assert SHORT == 256


@pytest.mark.parametrize(
    ("size", "decoded"),
    [
        ((4032, 3024), (504, 378)),  # 1/8: the short side stays >= 256
        ((2000, 1500), (500, 375)),  # 1/4
        ((600, 512), (300, 256)),  # 1/2, exactly 256
        ((600, 511), (600, 511)),  # half would be 255.5: full size
        ((500, 375), (500, 375)),  # ImageNet size: full size
    ],
)
def test_a_jpeg_decodes_at_the_smallest_scale_that_keeps_the_short_side(
    size: tuple[int, int], decoded: tuple[int, int]
) -> None:
    data = imagegen.encode(Image.new("RGB", size, (10, 20, 30)), "JPEG")
    assert decode_image(data, min_short_side=SHORT).size == decoded
    assert decode_image(data).size == size  # without the setting: full size


def test_other_formats_keep_the_full_decode() -> None:
    for fmt in ("PNG", "WEBP", "BMP", "GIF"):
        data = imagegen.encode(Image.new("RGB", (1200, 1024), (10, 20, 30)), fmt)
        assert decode_image(data, min_short_side=SHORT).size == (1200, 1024), fmt


def test_exif_orientation_is_still_applied_after_the_reduced_decode() -> None:
    stored = Image.new("RGB", (4000, 3000), (255, 0, 0))
    stored.paste((0, 0, 255), (0, 0, 1000, 3000))  # the stored left edge is blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = imagegen.encode(stored, "JPEG", exif=exif.tobytes(), quality=95)
    out = decode_image(data, min_short_side=SHORT)
    assert out.size == (375, 500)  # 1/8, then turned upright
    assert np.abs(np.asarray(out.getpixel((187, 20))) - (0, 0, 255)).max() <= 8  # now the top
    assert np.abs(np.asarray(out.getpixel((187, 480))) - (255, 0, 0)).max() <= 8


def test_a_camera_mpo_decodes_at_reduced_size_too() -> None:
    frames = [Image.new("RGB", (2048, 1536), c) for c in [(200, 10, 10), (10, 200, 10)]]
    data = imagegen.encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    out = decode_image(data, min_short_side=SHORT)
    assert out.size == (512, 384) and out.getpixel((10, 10))[0] > 150  # the first picture


def test_agreement_counts_top1_and_top5_score_changes() -> None:
    full = np.array([[0.7, 0.2, 0.1, 0, 0, 0], [0.48, 0.45, 0.07, 0, 0, 0]])
    reduced = np.array([[0.6, 0.3, 0.1, 0, 0, 0], [0.45, 0.48, 0.07, 0, 0, 0]])
    assert agreement(full, reduced) == {
        "top1_same": 0.5,
        "clear_lead_images": 1,
        "top1_same_where_clear": 1.0,
        "top5_max_score_diff": pytest.approx(0.1),
    }


def test_the_shipped_photos_at_phone_size_keep_their_labels(models_dir: Path) -> None:
    """Full-size against reduced-size decode through the real model, each photo upright and
    stored sideways: top-5 scores within 0.05, so the top-1 class is the same wherever the
    full decode's first two classes are further apart than that (the sideways astronaut,
    bobsled 0.094 against barbell 0.073, is a near tie that turns)."""
    from worker.loading.classifier import load_classifier

    loaded = load_classifier(Settings.load({"INFERQ_MODELS_DIR": str(models_dir)}))
    data = [_phone_jpeg(n, sideways=s) for n in SAMPLE_IMAGES for s in (False, True)]

    def probs(short: int | None) -> np.ndarray:
        x = np.stack([lite0_preprocess(decode_image(d, min_short_side=short)) for d in data])
        return np.asarray(loaded.keras_model(x, training=False))

    result = agreement(probs(None), probs(SHORT))
    assert result["top5_max_score_diff"] <= 0.05
    assert result["clear_lead_images"] >= 4  # not passed by finding every photo a near tie
    assert result["top1_same_where_clear"] == 1.0
