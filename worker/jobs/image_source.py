"""The image of a classify job: base64 bytes or a file under the image root.

Every way a payload can be wrong ends in one InvalidInput naming the field
and a code from the bad-input table (docs/contract.md). Decoding runs in the job
thread, so images are decoded while the runner thread keeps the model busy.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from PIL import Image

from inferq.core.images import ImageError, decode_image
from inferq.core.settings import Settings
from inferq.errors import InvalidInput


def _from_base64(text: Any, max_bytes: int) -> bytes:
    if not isinstance(text, str):
        raise InvalidInput.single(
            "image_b64", "not_a_string", f"expected base64 text, got {type(text).__name__}"
        )
    if len(text) > (max_bytes + 2) // 3 * 4 + 4:  # the encoded size of max_bytes, plus padding
        raise InvalidInput.single(
            "image_b64", "too_many_bytes", f"the image is larger than {max_bytes} bytes"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput.single(
            "image_b64", "invalid_base64", f"not valid base64: {exc}"
        ) from None


def _from_root(path: Any, root: Path | None, max_bytes: int) -> bytes:
    if not isinstance(path, str) or not path:
        raise InvalidInput.single("path", "not_a_string", "path must be a non-empty string")
    if root is None:
        raise InvalidInput.single(
            "path", "no_image_root", "this worker has no INFERQ_IMAGE_ROOT; send image_b64"
        )
    base = root.resolve()
    # resolve() follows symlinks, so a link that leaves the root is caught like "../".
    target = (base / path).resolve()
    if not target.is_relative_to(base):
        raise InvalidInput.single(
            "path", "path_outside_root", f"{path!r} is outside the image root"
        )
    if not target.is_file():
        raise InvalidInput.single(
            "path", "file_not_found", f"{path!r} is not a file under the image root"
        )
    if target.stat().st_size > max_bytes:
        raise InvalidInput.single(
            "path", "too_many_bytes", f"{path!r} is larger than {max_bytes} bytes"
        )
    return target.read_bytes()


def load_image(image_b64: Any, path: Any, settings: Settings) -> Image.Image:
    """The job's image as upright RGB, or InvalidInput."""
    if (image_b64 is None) == (path is None):
        raise InvalidInput.single(
            "image_b64", "image_source", "give exactly one of image_b64 or path"
        )
    field = "image_b64" if image_b64 is not None else "path"
    if image_b64 is not None:
        data = _from_base64(image_b64, settings.max_image_bytes)
    else:
        data = _from_root(path, settings.image_root, settings.max_image_bytes)
    try:
        return decode_image(
            data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
        )
    except ImageError as exc:
        raise InvalidInput.single(field, exc.code, exc.message) from None
