"""Read PyTorch checkpoint files into NumPy arrays without torch and without running pickled code.

PyTorch checkpoints are pickles whose tensors point at raw storage bytes. ``torch.load`` with
``weights_only=False`` would execute whatever callable the pickle names; this reader never calls a
pickled global. It maps the few globals a checkpoint needs onto stand-ins of its own that only
record their arguments, rebuilds every tensor as a NumPy array itself, and checks every tensor's
extent against its storage before building a view.

What it accepts, and why each is safe:

* **Both on-disk layouts**: the legacy one (``torch.save(..., _use_new_zipfile_serialization=False)``
  and every PyTorch before 1.6; the official Places365 checkpoints) -- a sequence of pickles followed
  by the raw storages, each prefixed by its element count -- and the zip layout (PyTorch >= 1.6):
  ``<name>/data.pkl`` plus one record per storage.
* **Storage types** ``torch.<T>Storage`` and ``torch.cuda.<T>Storage`` at any location (``cpu``,
  ``cuda:N``): only the element type is read off the name; every storage lands in host memory.
* **Tensor rebuild forms** of PyTorch 0.1 to 2.x: ``torch._utils._rebuild_tensor`` (0.1-0.3),
  ``_rebuild_tensor_v2`` (0.4 on), ``_rebuild_parameter`` and 0.4's ``torch.nn.parameter.Parameter``,
  and the tensor classes themselves (``torch.FloatTensor`` with its state set by BUILD, as pickle
  protocol 2 writes a class without ``__reduce__``). Each stand-in records (storage, offset, size,
  stride); nothing else in its arguments is used.
* **Python 2 byte strings** (SHORT_BINSTRING / BINSTRING, written by Python 2.7): decoded as
  latin-1, PyTorch's own documented workaround, which maps every byte to one character and so never
  fails; state_dict keys are ASCII either way.
* **NumPy metadata**: a NumPy scalar such as ``best_prec1`` (``numpy.core.multiarray.scalar`` with a
  ``numpy.dtype``) is rebuilt by the reader from the dtype's type code and the raw bytes; only
  boolean and numeric type codes are accepted.
* **Anything else** (another class, a function) is never looked up: it becomes a placeholder. Outside
  the state_dict, such metadata is dropped and reported through a :class:`CheckpointNote` warning;
  inside the state_dict, or as the whole file (a pickled ``nn.Module``), the file is refused with
  :class:`UnsafeCheckpointError`.

Every failure is a :class:`CheckpointError` (a ``ValueError``) whose message names the file.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "CheckpointFormatError",
    "CheckpointNote",
    "load_torch_checkpoint",
]

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
    "BFloat16Storage": "bfloat16",
}
_STORAGE_MODULES = ("torch", "torch.cuda")
# NumPy type codes a metadata scalar may have: booleans and numbers, never objects or strings.
_SCALAR_KINDS = frozenset("biufc")


class CheckpointError(ValueError):
    """The checkpoint cannot be read; the message names the file and what in it was refused."""


class UnsafeCheckpointError(CheckpointError):
    """A tensor of the state_dict, or the whole file, is an object the reader will not rebuild."""


class CheckpointFormatError(CheckpointError):
    """The file is not a PyTorch checkpoint this reader understands (or it is damaged)."""


class CheckpointNote(UserWarning):
    """Metadata beside an intact state_dict was skipped because it cannot be rebuilt safely."""


def _dtype_of_storage(name: str) -> np.dtype:
    dtype = _STORAGE_DTYPES[name]
    if dtype == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return _dtype_of_storage(self.name)


@dataclass
class _Storage:
    """A typed flat buffer; filled once its bytes are read (after the pickle, in the legacy layout)."""

    key: str
    dtype: np.dtype
    data: np.ndarray | None = None


@dataclass
class _StorageView:
    """Legacy checkpoints from PyTorch < 0.4 may store views into a shared root storage."""

    base: _Storage
    offset: int


def _as_index_tuple(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise CheckpointFormatError(f"a tensor's {what} is not a tuple of integers")
    return tuple(value)


class _PendingTensor:
    """What a tensor rebuild recorded; becomes a NumPy array once the storages are read."""

    def __init__(self, storage=None, offset=0, size=(), stride=()):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    @classmethod
    def from_args(cls, storage, storage_offset, size, stride) -> "_PendingTensor":
        if isinstance(storage, _StorageView):
            storage, storage_offset = storage.base, storage.offset + storage_offset
        if not isinstance(storage, _Storage):
            raise CheckpointFormatError("a tensor is not backed by a storage")
        if not isinstance(storage_offset, int) or isinstance(storage_offset, bool):
            raise CheckpointFormatError("a tensor's storage offset is not an integer")
        size, stride = _as_index_tuple(size, "size"), _as_index_tuple(stride, "stride")
        if len(size) != len(stride):
            raise CheckpointFormatError(f"a tensor has {len(size)} sizes but {len(stride)} strides")
        return cls(storage, storage_offset, size, stride)

    def materialise(self) -> np.ndarray:
        if self.storage is None:
            raise CheckpointFormatError("a tensor object was never given its storage")
        flat = self.storage.data
        if flat is None:
            raise CheckpointFormatError(f"a tensor refers to storage {self.storage.key}, which the file never provides")
        _check_extent(self.offset, self.size, self.stride, len(flat), self.storage.key)
        if not self.size:
            return np.array(flat[self.offset])  # 0-d array, not a NumPy scalar
        if 0 in self.size:
            return np.zeros(self.size, flat.dtype)
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * flat.dtype.itemsize for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _check_extent(offset: int, size: tuple[int, ...], stride: tuple[int, ...], numel: int, key: str) -> None:
    """Refuse a view that would reach outside its storage (as_strided does not check)."""
    if offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise CheckpointFormatError(f"a tensor on storage {key} has a negative offset, size or stride")
    if 0 in size:
        return
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= numel:
        raise CheckpointFormatError(
            f"a tensor on storage {key} (offset {offset}, size {size}, stride {stride}) reaches element {last}, "
            f"past the storage's {numel} elements"
        )


class _LegacyTensorClass(_PendingTensor):
    """Stands in for ``torch.FloatTensor`` and kin: pickle creates it empty, BUILD sets its state."""

    def __init__(self, *_args):
        super().__init__()

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 4:
            raise CheckpointFormatError("a legacy tensor's state is not (storage, offset, size, stride)")
        done = _PendingTensor.from_args(*state[:4])
        self.storage, self.offset, self.size, self.stride = done.storage, done.offset, done.size, done.stride


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Stands in for ``torch._utils._rebuild_tensor(_v2)``; extra args (grad flag, hooks) are unused."""
    return _PendingTensor.from_args(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    return data


class _DTypeSpec:
    """Stands in for ``numpy.dtype(code, align, copy)``; BUILD gives the byte order."""

    def __init__(self, code=None, *_ignored):
        self.code, self.order = code, "<"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.order = state[1]

    def dtype(self) -> np.dtype | None:
        """The dtype when it is a plain boolean or number type, else None."""
        if not isinstance(self.code, str) or not self.code.isascii() or not 1 <= len(self.code) <= 4:
            return None
        try:
            dtype = np.dtype(self.code)
        except TypeError:
            return None
        if dtype.kind not in _SCALAR_KINDS:
            return None
        return dtype.newbyteorder(self.order) if self.order in "<>" else dtype


def _numpy_scalar(dtype=None, data=None, *_ignored):
    """Stands in for ``numpy.core.multiarray.scalar``: the value from its dtype and raw bytes.

    A scalar that is not a plain number (an object, a string, bytes of the wrong length) becomes a
    placeholder, dropped with a note like any metadata the reader does not rebuild.
    """
    dt = dtype.dtype() if isinstance(dtype, _DTypeSpec) else None
    try:
        raw = data.encode("latin-1") if isinstance(data, str) else data  # Python 2 str, read as latin-1
    except UnicodeEncodeError:
        raw = None
    if dt is None or not isinstance(raw, bytes) or len(raw) != dt.itemsize:
        return _placeholder_class("numpy.core.multiarray", "scalar (not a plain number)")()
    return np.frombuffer(raw, dt)[0].astype(dt.newbyteorder("="))


class _Placeholder:
    """An object of a global the reader does not rebuild. Accepts what pickle does with objects."""

    origin = "?"

    def __init__(self, *_args, **_kwargs):
        pass

    def __call__(self, *_args, **_kwargs):
        return self

    def __setstate__(self, _state):
        pass

    def append(self, _item):
        pass

    def extend(self, _items):
        pass

    def __setitem__(self, _key, _value):
        pass


def _placeholder_class(module: str, name: str) -> type:
    return type("Placeholder", (_Placeholder,), {"origin": f"{module}.{name}"})


def _is_placeholder(obj) -> bool:
    return isinstance(obj, _Placeholder) or (isinstance(obj, type) and issubclass(obj, _Placeholder))


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.nn.parameter", "Parameter"): _rebuild_parameter,  # PyTorch 0.4: Parameter(data, requires_grad)
    ("numpy", "dtype"): _DTypeSpec,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}
_TENSOR_CLASS_NAMES = {name.replace("Storage", "Tensor") for name in _STORAGE_DTYPES}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, _Storage], read_zip_record=None):
        # latin-1: Python 2 byte strings load as str, one character per byte, whatever the bytes.
        super().__init__(file, encoding="latin1")
        self._storages = storages
        self._read_zip_record = read_zip_record

    def find_class(self, module: str, name: str):
        if module in _STORAGE_MODULES and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module in _STORAGE_MODULES and name in _TENSOR_CLASS_NAMES:
            return _LegacyTensorClass
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        return _placeholder_class(module, name)

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module" and _is_placeholder(pid[1]):
            return pid[1]  # a whole pickled nn.Module (legacy layout records its class's source)
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise CheckpointFormatError(f"unsupported persistent id {pid!r:.80}")
        storage_type, key, location = pid[1], str(pid[2]), pid[3]
        view_metadata = pid[5] if len(pid) > 5 else None
        if not isinstance(storage_type, _StorageType):
            raise CheckpointFormatError(f"storage {key:.40} has no known element type")
        if not isinstance(location, str) or not (location == "cpu" or location.startswith("cuda")):
            raise CheckpointFormatError(f"storage {key:.40} is at unknown location {location!r:.40}")
        root = self._storages.get(key)
        if root is None:
            root = self._storages[key] = _Storage(key, storage_type.dtype)
            if self._read_zip_record is not None:
                root.data = np.frombuffer(self._read_zip_record(key), dtype=root.dtype.newbyteorder("<"))
        elif root.dtype != storage_type.dtype:
            raise CheckpointFormatError(f"storage {key:.40} is referred to with two element types")
        if view_metadata is not None:
            if not isinstance(view_metadata, tuple) or len(view_metadata) != 3 or not isinstance(view_metadata[1], int):
                raise CheckpointFormatError(f"storage {key:.40} has malformed view metadata")
            return _StorageView(root, view_metadata[1])
        return root


def _materialise(obj, path: str, notes: list[str]):
    """Arrays for pending tensors; placeholders dropped from containers with a note."""
    if isinstance(obj, _PendingTensor):
        return obj.materialise()
    if isinstance(obj, dict):
        out = obj.__class__() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            if _is_placeholder(k) or _is_placeholder(v):
                what = (v if _is_placeholder(v) else k).origin
                notes.append(f"skipped {path}[{k if isinstance(k, str) else '?'!r}]: a {what} object, not rebuilt")
                continue
            out[k] = _materialise(v, f"{path}[{k!r}]", notes)
        return out
    if isinstance(obj, (list, tuple)):
        kept = []
        for i, v in enumerate(obj):
            if _is_placeholder(v):
                notes.append(f"skipped {path}[{i}]: a {v.origin} object, not rebuilt")
                continue
            kept.append(_materialise(v, f"{path}[{i}]", notes))
        return kept if isinstance(obj, list) else tuple(kept)
    return obj


def _refuse_placeholders_in_state_dict(obj) -> None:
    if _is_placeholder(obj):
        raise UnsafeCheckpointError(
            f"the file holds a pickled {obj.origin} object, not a state_dict; "
            "a weights-only reader does not rebuild it (save model.state_dict() instead)"
        )
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if isinstance(sd, dict):
        for k, v in sd.items():
            if _is_placeholder(v) or _is_placeholder(k):
                what = (v if _is_placeholder(v) else k).origin
                raise UnsafeCheckpointError(
                    f"state_dict entry {k if isinstance(k, str) else '?'!r} refers to {what}, "
                    "which a weights-only reader does not run"
                )


def _load_legacy(data: bytes) -> Any:
    f = io.BytesIO(data)
    safe = lambda: _RestrictedUnpickler(f, {}).load()  # noqa: E731 - header pickles hold plain data
    if safe() != _LEGACY_MAGIC:
        raise CheckpointFormatError("not a PyTorch checkpoint (bad magic number)")
    protocol = safe()
    if protocol != _LEGACY_PROTOCOL:
        raise CheckpointFormatError(f"unsupported legacy protocol version {protocol!r:.40}")
    sys_info = safe()
    if not isinstance(sys_info, dict):
        raise CheckpointFormatError("the header's system information is not a dict")
    if not sys_info.get("little_endian", True):
        raise CheckpointFormatError("big-endian checkpoints are not supported")
    storages: dict[str, _Storage] = {}
    result = _RestrictedUnpickler(f, storages).load()
    keys = _RestrictedUnpickler(f, {}).load()
    if not isinstance(keys, (list, tuple)):
        raise CheckpointFormatError("the list of storage keys is not a list")
    view = memoryview(data)
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise CheckpointFormatError(f"storage {str(key):.40} is listed but never referenced")
        if storage.data is not None:
            raise CheckpointFormatError(f"storage {str(key):.40} is listed twice")
        (numel,) = struct.unpack("<q", _read_exact(f, 8))
        nbytes = numel * storage.dtype.itemsize
        start = f.tell()
        # Checked before anything is allocated: a count can claim more bytes than the file holds.
        if numel < 0 or start + nbytes > len(data):
            raise CheckpointFormatError(f"checkpoint is truncated (storage {str(key):.40} claims {numel:,} elements)")
        storage.data = np.frombuffer(view[start : start + nbytes], dtype=storage.dtype.newbyteorder("<"))
        f.seek(start + nbytes)
    return result


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise CheckpointFormatError("checkpoint is truncated")
    return data


def _load_zip(path: Path) -> Any:
    file_size = path.stat().st_size
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise CheckpointFormatError("zip checkpoint without exactly one data.pkl")
        prefix = pkl[0][: -len("data.pkl")]

        def read(name: str) -> bytes:
            try:
                info = zf.getinfo(name)
            except KeyError:
                raise CheckpointFormatError(f"the zip has no record {name}") from None
            # PyTorch stores records uncompressed; a record larger than the whole file is a zip bomb.
            if info.file_size > file_size:
                raise CheckpointFormatError(f"record {name} claims {info.file_size:,} bytes, more than the file")
            return zf.read(info)

        byteorder = prefix + "byteorder"
        if byteorder in names and read(byteorder).strip() != b"little":
            raise CheckpointFormatError("big-endian checkpoints are not supported")
        unpickler = _RestrictedUnpickler(io.BytesIO(read(pkl[0])), {}, lambda key: read(f"{prefix}data/{key}"))
        return unpickler.load()


def load_torch_checkpoint(path: str | Path) -> Any:
    """Load a ``torch.save`` file as nested Python containers of NumPy arrays.

    Metadata that cannot be rebuilt safely is dropped, each with a :class:`CheckpointNote` warning.
    Raises :class:`UnsafeCheckpointError` when a state_dict entry (or the whole file) is such an
    object, and :class:`CheckpointFormatError` for anything else it cannot read; both name ``path``.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            result = _load_zip(path)
        else:
            result = _load_legacy(path.read_bytes())
        _refuse_placeholders_in_state_dict(result)
        notes: list[str] = []
        loaded = _materialise(result, "checkpoint", notes)
    except CheckpointError as e:
        raise type(e)(f"{path}: {e}") from None
    except (OSError, MemoryError) as e:
        raise CheckpointFormatError(f"{path}: cannot be read ({e})") from None
    except Exception as e:  # noqa: BLE001 - a malformed pickle raises anything; none of it is the caller's
        raise CheckpointFormatError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    for note in notes:
        warnings.warn(f"{path.name}: {note}", CheckpointNote, stacklevel=2)
    return loaded
