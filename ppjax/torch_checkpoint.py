"""Read PyTorch checkpoint files into NumPy arrays without torch and without running pickled code.

PyTorch checkpoints are pickles whose tensors point at raw storage bytes. ``torch.load`` with
``weights_only=False`` would execute whatever callable the pickle names; this reader instead
allows only the handful of globals a state_dict needs (tensor rebuild functions, storage types,
``OrderedDict``) and rebuilds each tensor as a NumPy array itself. Anything else in the pickle
raises :class:`UnsafeCheckpointError` naming the global.

Both on-disk layouts are supported:

* the legacy layout (``torch.save(..., _use_new_zipfile_serialization=False)`` and every
  PyTorch before 1.6), used by the official Places365 checkpoints: a sequence of pickles
  followed by the raw storages, each prefixed by its element count;
* the zip layout (PyTorch >= 1.6): ``<name>/data.pkl`` plus one file per storage.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["UnsafeCheckpointError", "CheckpointFormatError", "load_torch_checkpoint"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# Storage class name -> NumPy dtype. bfloat16 comes from ml_dtypes, which JAX depends on.
_STORAGE_DTYPES: dict[str, Any] = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint references code outside the state_dict whitelist."""


class CheckpointFormatError(ValueError):
    """The file is not a PyTorch checkpoint this reader understands."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        if self.name == "BFloat16Storage":
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(_STORAGE_DTYPES[self.name])


@dataclass
class _Storage:
    """A typed flat buffer; filled lazily for the legacy layout, where bytes follow the pickle."""

    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _PendingTensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        if self.storage.data is None:
            raise CheckpointFormatError("a tensor refers to a storage that the file never provides")
        flat = self.storage.data
        if not self.size:
            return np.array(flat[self.offset])  # 0-d array, not a NumPy scalar
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Stands in for torch._utils._rebuild_tensor(_v2); extra args (grad flag, hooks) are unused."""
    if isinstance(storage, _StorageView):
        storage, storage_offset = storage.base, storage.offset + storage_offset
    return _PendingTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    return data


@dataclass
class _StorageView:
    """Legacy checkpoints from PyTorch < 0.4 may store views into a shared root storage."""

    base: _Storage
    offset: int


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, _Storage], read_zip_record=None):
        super().__init__(file, encoding="utf-8")
        self._storages = storages
        self._read_zip_record = read_zip_record

    def find_class(self, module: str, name: str):
        if module == "torch" and (name in _STORAGE_DTYPES or name == "BFloat16Storage"):
            return _StorageType(name)
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"checkpoint refers to {module}.{name}, which a weights-only reader does not run"
            ) from None

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise UnsafeCheckpointError(f"unsupported persistent id {pid!r:.80}")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        view_metadata = pid[5] if len(pid) > 5 else None
        if not isinstance(storage_type, _StorageType):
            raise CheckpointFormatError(f"storage {key} has no known element type")
        if self._read_zip_record is not None:
            # Zip layout: storage_type is the typed storage and numel its element count.
            if key not in self._storages:
                raw = self._read_zip_record(key)
                data = np.frombuffer(raw, dtype=storage_type.dtype.newbyteorder("<"))
                self._storages[key] = _Storage(storage_type.dtype, len(data), data)
            return self._storages[key]
        root = self._storages.setdefault(key, _Storage(storage_type.dtype, numel))
        if view_metadata is not None:
            _view_key, offset, _view_size = view_metadata
            return _StorageView(root, int(offset))
        return root


def _materialise(obj):
    if isinstance(obj, _PendingTensor):
        return obj.materialise()
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialise(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v) for v in obj)
    return obj


def _load_legacy(f: BinaryIO) -> Any:
    safe = lambda: _RestrictedUnpickler(f, {}).load()  # noqa: E731 - header pickles hold plain data
    magic = safe()
    if magic != _LEGACY_MAGIC:
        raise CheckpointFormatError("not a PyTorch checkpoint (bad magic number)")
    protocol = safe()
    if protocol != _LEGACY_PROTOCOL:
        raise CheckpointFormatError(f"unsupported legacy protocol version {protocol}")
    sys_info = safe()
    if not sys_info.get("little_endian", True):
        raise CheckpointFormatError("big-endian checkpoints are not supported")
    storages: dict[str, _Storage] = {}
    result = _RestrictedUnpickler(f, storages).load()
    keys = _RestrictedUnpickler(f, {}).load()
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise CheckpointFormatError(f"storage {key} is listed but never referenced")
        (numel,) = struct.unpack("<q", _read_exact(f, 8))
        nbytes = numel * storage.dtype.itemsize
        storage.data = np.frombuffer(_read_exact(f, nbytes), dtype=storage.dtype.newbyteorder("<"))
    return _materialise(result)


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise CheckpointFormatError("checkpoint is truncated")
    return data


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise CheckpointFormatError("zip checkpoint without exactly one data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in names and zf.read(byteorder).strip() != b"little":
            raise CheckpointFormatError("big-endian checkpoints are not supported")

        def read_record(key: str) -> bytes:
            return zf.read(f"{prefix}data/{key}")

        unpickler = _RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), {}, read_record)
        return _materialise(unpickler.load())


def load_torch_checkpoint(path: str | Path) -> Any:
    """Load a ``torch.save`` file as nested Python containers of NumPy arrays.

    Raises :class:`UnsafeCheckpointError` if the pickle needs any global outside the
    state_dict whitelist, and :class:`CheckpointFormatError` for files it cannot parse.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    with open(path, "rb") as f:
        try:
            return _load_legacy(f)
        except (EOFError, struct.error, pickle.UnpicklingError) as e:
            if isinstance(e, UnsafeCheckpointError):
                raise
            raise CheckpointFormatError(f"{path}: not a readable PyTorch checkpoint ({e})") from e
