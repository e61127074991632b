"""The pickle side of the weights-only checkpoint reader: stand-ins for the globals a checkpoint
names, and the unpickler that hands them out. Nothing here calls a pickled global; each stand-in
only records its arguments (see :mod:`ppjax.store.torch_checkpoint` for what is accepted and why).
"""

from __future__ import annotations

import collections
import pickle
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

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
        if not isinstance(flat, np.ndarray):
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
#: Objects whose state a pickle may set (BUILD): tensors of PyTorch 0.1, NumPy dtypes (byte order),
#: placeholders (state ignored) and OrderedDicts (a state_dict's ``_metadata`` attribute).
_BUILDABLE = (_LegacyTensorClass, _DTypeSpec, _Placeholder, collections.OrderedDict)


class _RestrictedUnpickler(pickle._Unpickler):  # noqa: SLF001 - the Python unpickler, to restrict BUILD
    """The pure-Python unpickler with ``find_class`` handing out stand-ins and ``BUILD`` (which sets
    an object's state) allowed only on objects that are meant to take it: otherwise a file could set
    attributes on the reader's own shared stand-ins. Checkpoint pickles are small (the tensors'
    bytes are read outside the pickle), so the Python implementation costs nothing noticeable."""

    dispatch = dict(pickle._Unpickler.dispatch)  # noqa: SLF001

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage], read_zip_record=None):
        # latin-1: Python 2 byte strings load as str, one character per byte, whatever the bytes.
        super().__init__(file, encoding="latin1")
        self._storages = storages
        self._read_zip_record = read_zip_record

    def load_build(self):
        target = self.stack[-2] if len(self.stack) >= 2 else None
        if not isinstance(target, _BUILDABLE):
            raise CheckpointFormatError(f"the pickle sets the state of a {type(target).__name__}, which no checkpoint does")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

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


