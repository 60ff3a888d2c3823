"""Read a legacy (pre-1.6, non-zip) PyTorch ``state_dict`` file with numpy only.

Layout of such a file, as ``torch.save`` wrote it before the zip format:
five pickles in a row -- a magic number, the protocol version (1001), a
``sys_info`` dict, the state dict itself (tensors refer to their storages
through ``persistent_load``), the list of storage keys in file order -- and
then, per storage, an int64 element count followed by the raw bytes.

The unpickler is restricted: it resolves only ``collections.OrderedDict``,
torch's two tensor-rebuild functions and the typed storage classes, each
mapped to a numpy stand-in. Any other global is refused, so the file can
never run code. torch itself is neither needed nor imported.
"""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
_ZIP_MAGIC = b"PK\x03\x04"

# Element types come from the storage class, never from sys_info: files
# written on Windows say ``long: 4`` although a LongStorage holds int64.
_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}

# What a corrupt pickle stream can raise while being read.
_PICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    UnicodeDecodeError,
    OverflowError,
    MemoryError,  # the last resort against a corrupt length or index; see _check_memo
    # A corrupt STRING opcode warns "invalid escape sequence"; where warnings are errors
    # that is one more way for a damaged file to fail (no warning filter is changed here).
    DeprecationWarning,
)
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


class TorchFileError(ValueError):
    """The file is not a readable legacy PyTorch state dict."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype[Any]:
        return _STORAGE_DTYPES[self.name]


@dataclass
class _Storage:
    key: str
    dtype: np.dtype[Any]
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _StorageView:
    """A storage as a tensor sees it: possibly a view at an element offset."""

    root: _Storage
    offset: int = 0


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageView
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(
    storage: _StorageView, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _TensorRef:
    # Extra positional args of _rebuild_tensor_v2 (requires_grad, hooks) do not matter here.
    if not isinstance(storage, _StorageView):
        raise TorchFileError(f"tensor built on {type(storage).__name__}, not on a storage")
    return _TensorRef(storage, int(offset), tuple(map(int, size)), tuple(map(int, stride)))


class _Unpickler(pickle.Unpickler):
    """Restricted unpickler; collects the storages the tensors name."""

    def __init__(self, file: BinaryIO, *, allow_torch: bool = True) -> None:
        super().__init__(file)
        self.file = file
        self.allow_torch = allow_torch
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if self.allow_torch:
            if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
                return _rebuild_tensor
            if module == "torch" and name in _STORAGE_DTYPES:
                return _StorageType(name)
        raise TorchFileError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid: Any) -> _StorageView:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise TorchFileError(f"unsupported persistent id {pid!r:.80}")
        _, stype, key, _location, numel, view = pid
        if not isinstance(stype, _StorageType):
            raise TorchFileError(f"storage {key!r} has unknown type {stype!r:.80}")
        root = self.storages.setdefault(str(key), _Storage(str(key), stype.dtype, int(numel)))
        if view is None:
            return _StorageView(root)
        _view_key, view_offset, _view_size = view
        return _StorageView(root, int(view_offset))


def _check_memo(f: BinaryIO) -> None:
    """Refuse memo indices a pickler could not have written, before unpickling.

    The C unpickler grows its memo table to whatever index a PUT names and
    clears every new slot, so one corrupt 4-byte index costs gigabytes. A real
    pickler numbers memo entries 0, 1, 2, ..., never beyond the count of opcodes.
    """
    start = f.tell()
    for count, (op, arg, _pos) in enumerate(pickletools.genops(f)):
        if op.name in _MEMO_PUTS and not (isinstance(arg, int) and 0 <= arg <= count):
            raise TorchFileError(f"corrupt pickle: memo index {arg} at opcode {count}")
    f.seek(start)


def _unpickle(unpickler: _Unpickler, what: str) -> Any:
    try:
        _check_memo(unpickler.file)
        return unpickler.load()
    except TorchFileError:
        raise
    except _PICKLE_ERRORS as exc:
        raise TorchFileError(f"corrupt {what}: {type(exc).__name__}: {exc}") from None


def _load_plain(f: BinaryIO, what: str) -> Any:
    """Unpickle one of the small header/trailer pickles, with no globals allowed."""
    return _unpickle(_Unpickler(f, allow_torch=False), what)


def _read_header(f: BinaryIO) -> dict[str, Any]:
    head = f.read(4)
    if head == _ZIP_MAGIC:
        raise TorchFileError(
            "zip-format checkpoint (torch >= 1.6); only the legacy format is supported"
        )
    if not head.startswith(b"\x80"):
        raise TorchFileError("not a PyTorch legacy file (no pickle header)")
    f.seek(0)
    if _load_plain(f, "magic number") != MAGIC_NUMBER:
        raise TorchFileError("not a PyTorch legacy file (wrong magic number)")
    protocol = _load_plain(f, "protocol version")
    if protocol != PROTOCOL_VERSION:
        raise TorchFileError(f"unsupported legacy protocol version {protocol!r}")
    sys_info = _load_plain(f, "sys_info")
    if not isinstance(sys_info, dict):
        raise TorchFileError("corrupt sys_info")
    return sys_info


def _read_storages(
    f: BinaryIO, keys: list[str], storages: dict[str, _Storage], little: bool
) -> None:
    here = f.tell()
    end = f.seek(0, io.SEEK_END)
    f.seek(here)
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise TorchFileError(f"storage {key!r} is listed but no tensor uses it")
        count = int.from_bytes(f.read(8), "little" if little else "big", signed=True)
        nbytes = count * storage.dtype.itemsize
        if count != storage.numel or count < 0:
            raise TorchFileError(
                f"storage {key!r}: {count} elements, the tensors say {storage.numel}"
            )
        # Checked before reading, so a corrupt size cannot ask for a huge allocation.
        if nbytes > end - f.tell():
            raise TorchFileError(f"file truncated inside storage {key!r}")
        raw = f.read(nbytes)
        dtype = storage.dtype.newbyteorder("<" if little else ">")
        storage.data = np.frombuffer(raw, dtype=dtype).astype(storage.dtype.newbyteorder("="))
    if f.read(1):
        raise TorchFileError("unexpected data after the last storage")


def _materialise(name: str, ref: _TensorRef) -> np.ndarray:
    data = ref.storage.root.data
    if data is None:
        raise TorchFileError(f"tensor {name!r}: its storage has no data in the file")
    if len(ref.size) != len(ref.stride) or min((*ref.size, *ref.stride, ref.offset, 0)) < 0:
        raise TorchFileError(f"tensor {name!r}: bad size/stride {ref.size}/{ref.stride}")
    start = ref.storage.offset + ref.offset
    if 0 in ref.size:
        return np.zeros(ref.size, dtype=data.dtype)
    last = start + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= data.size:  # as_strided does no bounds checking: never read past the storage
        raise TorchFileError(f"tensor {name!r} reaches past the end of its storage")
    strides = tuple(s * data.itemsize for s in ref.stride)
    view = np.lib.stride_tricks.as_strided(data[start:], shape=ref.size, strides=strides)
    return np.array(view, copy=True)


def _as_output(array: np.ndarray) -> np.ndarray:
    # Floating tensors become float32; integer ones (BatchNorm's num_batches_tracked)
    # keep their integer type, since casting a counter to float would mean nothing.
    return array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) else array


def _read(f: BinaryIO) -> dict[str, np.ndarray]:
    sys_info = _read_header(f)
    unpickler = _Unpickler(f)
    state = _unpickle(unpickler, "state dict pickle")
    if not isinstance(state, dict):
        raise TorchFileError(f"the file holds a {type(state).__name__}, not a state dict")
    keys = _load_plain(f, "storage key list")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise TorchFileError("corrupt storage key list")
    _read_storages(f, keys, unpickler.storages, bool(sys_info.get("little_endian", True)))
    out: dict[str, np.ndarray] = {}
    for name, ref in state.items():
        if not isinstance(name, str) or not isinstance(ref, _TensorRef):
            raise TorchFileError(f"state dict entry {name!r:.80} is not a tensor")
        out[name] = _as_output(_materialise(name, ref))
    return out


def load_state_dict(path: Path | str) -> dict[str, np.ndarray]:
    """Read a legacy PyTorch state dict into ``{name: numpy array}``, in file order.

    Floating tensors come back as float32, integer ones with their own type.
    Raises TorchFileError (a ValueError) for a zip-format, corrupt or unknown file.
    """
    # Read whole: a file object's read(n) allocates n bytes up front, and a corrupt
    # length inside a pickle would name n; from memory, a short read is just short.
    return _read(io.BytesIO(Path(path).read_bytes()))


def load_state_dict_bytes(data: bytes) -> dict[str, np.ndarray]:
    """Like load_state_dict, from bytes in memory (used by tests on corrupted copies)."""
    return _read(io.BytesIO(data))
