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
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ppjax.store.torch_pickle import (
    CheckpointError,
    CheckpointFormatError,
    CheckpointNote,
    UnsafeCheckpointError,
    _is_placeholder,
    _PendingTensor,
    _RestrictedUnpickler,
    _Storage,
)


__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "CheckpointFormatError",
    "CheckpointNote",
    "load_torch_checkpoint",
]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

def _placeholder_origin(key, value) -> str | None:
    """The global a dict entry stands for when its key or value is a placeholder, else None."""
    found = value if _is_placeholder(value) else key if _is_placeholder(key) else None
    return None if found is None else found.origin


def _key_text(key) -> str:
    return repr(key if isinstance(key, str) else "?")


class _Materialiser:
    """Arrays for pending tensors, placeholders dropped from containers with a note.

    Shared references stay shared (a pickle can nest one list in itself twice per level, which
    expanded as a tree is 2^depth visits), and the tensors' bytes together may not exceed twice the
    file's: views of one large storage, repeated, would otherwise copy it again and again.
    """

    def __init__(self, file_bytes: int):
        self.notes: list[str] = []
        self.budget = 2 * file_bytes + (1 << 20)
        self.done: dict[int, object] = {}

    def __call__(self, obj, path: str = "checkpoint"):
        if id(obj) in self.done:
            return self.done[id(obj)]
        if isinstance(obj, _PendingTensor):
            out = obj.materialise()
            self.budget -= out.nbytes
            if self.budget < 0:
                raise CheckpointFormatError("its tensors add up to more than twice the bytes in the file")
        elif isinstance(obj, dict):
            out = obj.__class__() if isinstance(obj, collections.OrderedDict) else {}
            for k, v in obj.items():
                if (what := _placeholder_origin(k, v)) is not None:
                    self.notes.append(f"skipped {path}[{_key_text(k)}]: a {what} object, not rebuilt")
                    continue
                out[k] = self(v, f"{path}[{k!r:.40}]")
        elif isinstance(obj, (list, tuple)):
            kept = []
            for i, v in enumerate(obj):
                if _is_placeholder(v):
                    self.notes.append(f"skipped {path}[{i}]: a {v.origin} object, not rebuilt")
                    continue
                kept.append(self(v, f"{path}[{i}]"))
            out = kept if isinstance(obj, list) else tuple(kept)
        else:
            return obj
        self.done[id(obj)] = out
        return out


def _refuse_placeholders_in_state_dict(obj) -> None:
    if _is_placeholder(obj):
        raise UnsafeCheckpointError(
            f"the file holds a pickled {obj.origin} object, not a state_dict; "
            "a weights-only reader does not rebuild it (save model.state_dict() instead)"
        )
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if isinstance(sd, dict):
        for k, v in sd.items():
            if (what := _placeholder_origin(k, v)) is not None:
                raise UnsafeCheckpointError(f"state_dict entry {_key_text(k)} refers to {what}, which a weights-only reader does not run")


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
        materialise = _Materialiser(path.stat().st_size)
        loaded, notes = materialise(result), materialise.notes
    except CheckpointError as e:
        raise type(e)(f"{path}: {e}") from None
    except (OSError, MemoryError) as e:
        raise CheckpointFormatError(f"{path}: cannot be read ({e})") from None
    except Exception as e:  # noqa: BLE001 - a malformed pickle raises anything; none of it is the caller's
        raise CheckpointFormatError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    for note in notes:
        warnings.warn(f"{path.name}: {note}", CheckpointNote, stacklevel=2)
    return loaded
