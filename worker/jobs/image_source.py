"""The image of a classify job: base64 bytes, a file under the image root, or (in a chunk)
raw bytes a producer stored in Redis (a blob).

Every way a payload can be wrong ends in one InvalidInput naming the field
and a code from the bad-input table (docs/bad-input.md), file system errors
included: a NUL byte, a name too long, a symlink loop, a file that cannot be read.
"""

from __future__ import annotations

import binascii
import errno
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from inferq.core.images import ImageError, decode_image
from inferq.core.settings import Settings
from inferq.errors import InvalidInput

# Reads the bytes stored under a blob id, at most ``max_bytes`` + 1 of them; None if
# there are none (worker.celeryapp.blobs reads them from Redis).
BlobReader = Callable[[str, int], "bytes | None"]
_BLOB_ID = re.compile("[0-9a-f]{32}")


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
        # Strict a2b_base64 rather than b64decode(validate=True), which runs a regex over
        # the text first: 6 ms instead of 10 for a phone photo.
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput.single(
            "image_b64", "invalid_base64", f"not valid base64: {exc}"
        ) from None


def _path_error(path: str, exc: BaseException) -> InvalidInput:
    """A path the file system cannot follow, as the job's typed error."""
    if isinstance(exc, ValueError):  # "embedded null byte"
        return InvalidInput.single("path", "invalid_path", f"{path!r} holds a NUL byte")
    if isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP:
        return InvalidInput.single("path", "invalid_path", f"{path!r}: a symlink loop")
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        message = f"{path[:64]!r}...: a name longer than the file system allows"
        return InvalidInput.single("path", "invalid_path", message)
    if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
        return InvalidInput.single(
            "path", "file_not_found", f"{path!r} is not a file under the image root"
        )
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    return InvalidInput.single("path", "unreadable_file", f"{path!r} cannot be read: {reason}")


def _from_root(path: Any, root: Path | None, max_bytes: int) -> bytes:
    if not isinstance(path, str) or not path:
        raise InvalidInput.single("path", "not_a_string", "path must be a non-empty string")
    if root is None:
        raise InvalidInput.single(
            "path", "no_image_root", "this worker has no INFERQ_IMAGE_ROOT; send image_b64"
        )
    try:
        return _read_under(root, path, max_bytes)
    except InvalidInput:
        raise
    except (OSError, ValueError, RuntimeError) as exc:  # every way a path can be unusable
        raise _path_error(path, exc) from None


def _read_under(root: Path, path: str, max_bytes: int) -> bytes:
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
    with target.open("rb") as file:
        # At most one byte past the limit: a file that grew after a size check is no risk.
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InvalidInput.single(
            "path", "too_many_bytes", f"{path!r} is larger than {max_bytes} bytes"
        )
    return data


def _from_blob(blob: Any, read: BlobReader | None, max_bytes: int) -> bytes:
    if not isinstance(blob, str) or not _BLOB_ID.fullmatch(blob):
        raise InvalidInput.single("blob", "invalid_blob", "blob must be 32 hex digits")
    if read is None:
        raise InvalidInput.single("blob", "no_blob_store", "this worker cannot read blobs")
    data = read(blob, max_bytes)
    if data is None:
        message = f"no image stored as {blob} (expired, or already removed by its producer)"
        raise InvalidInput.single("blob", "blob_not_found", message)
    if len(data) > max_bytes:
        raise InvalidInput.single(
            "blob", "too_many_bytes", f"blob {blob} is over {max_bytes} bytes"
        )
    return data


def image_bytes(
    image_b64: Any,
    path: Any,
    settings: Settings,
    blob: Any = None,
    read_blob: BlobReader | None = None,
) -> tuple[str, bytes]:
    """The job's image file: which field it came from, and its bytes (or InvalidInput)."""
    if sum(source is not None for source in (image_b64, path, blob)) != 1:
        message = "give exactly one of image_b64 or path" + (" or blob" if blob else "")
        raise InvalidInput.single("image_b64", "image_source", message)
    max_bytes = settings.max_image_bytes
    if image_b64 is not None:
        return "image_b64", _from_base64(image_b64, max_bytes)
    if path is not None:
        return "path", _from_root(path, settings.image_root, max_bytes)
    return "blob", _from_blob(blob, read_blob, max_bytes)


def load_image(image_b64: Any, path: Any, settings: Settings) -> Image.Image:
    """The job's image as upright RGB, at full size, or InvalidInput (for callers
    outside the decode budget: the benchmark's and the tests' own checks)."""
    field, data = image_bytes(image_b64, path, settings)
    try:
        return decode_image(
            data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
        )
    except ImageError as exc:
        raise InvalidInput.single(field, exc.code, exc.message) from None
