"""Write checkpoints the way Python 2.7 + PyTorch 0.2 (2017) did, opcode by opcode.

The official Places365 files were saved by ``torch.save`` on Python 2 from a model trained on GPU in
``DataParallel``. Python 3's pickler cannot write what that produced: Python 2 ``str`` objects are
byte strings (SHORT_BINSTRING / BINSTRING), storages are ``torch.cuda.FloatStorage`` at location
``'cuda:0'``, an ``OrderedDict`` pickles as ``OrderedDict([[k, v], ...])``, and a NumPy scalar as
``numpy.core.multiarray.scalar(numpy.dtype('f8', 0, 1) + BUILD state, raw bytes)``. This module
writes those opcodes itself, then the legacy layout: magic number, protocol, system info, the
object, the storage keys, and each storage as an int64 element count followed by its bytes.
"""

from __future__ import annotations

import collections
import struct
from dataclasses import dataclass, field

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


@dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclass(frozen=True)
class Reduce:
    """``func(*args)`` as pickle's REDUCE; ``state`` (if any) is applied with BUILD."""

    func: object
    args: tuple
    state: object = None


@dataclass(frozen=True)
class NewObj:
    """``cls.__new__(cls, *args)`` as NEWOBJ, then BUILD with ``state`` (protocol 2, no __reduce__)."""

    cls: Global
    args: tuple
    state: object


@dataclass(frozen=True)
class PersistentId:
    pid: tuple


@dataclass(frozen=True)
class Bytes2:
    """A Python 2 ``str`` holding arbitrary bytes (written as SHORT_BINSTRING / BINSTRING)."""

    raw: bytes


class Py2Pickler:
    """Protocol 2 pickles as Python 2.7 wrote them, for the value types a checkpoint holds."""

    def __init__(self):
        self.out = bytearray()

    def dumps(self, obj) -> bytes:
        self.out = bytearray(b"\x80\x02")
        self._save(obj)
        self.out += b"."
        return bytes(self.out)

    def _save(self, obj) -> None:
        o = self.out
        if obj is None:
            o += b"N"
        elif obj is True or obj is False:
            o += b"\x88" if obj else b"\x89"
        elif isinstance(obj, int):
            if 0 <= obj < 256:
                o += b"K" + bytes([obj])
            elif 0 <= obj < 65536:
                o += b"M" + struct.pack("<H", obj)
            elif -(2**31) <= obj < 2**31:
                o += b"J" + struct.pack("<i", obj)
            else:  # Python 2 long: LONG1, little-endian two's complement
                n = (obj.bit_length() + 8) // 8
                o += b"\x8a" + bytes([n]) + obj.to_bytes(n, "little", signed=True)
        elif isinstance(obj, float):
            o += b"G" + struct.pack(">d", obj)
        elif isinstance(obj, (str, Bytes2)):
            raw = obj.raw if isinstance(obj, Bytes2) else obj.encode("ascii")
            o += (b"U" + bytes([len(raw)]) if len(raw) < 256 else b"T" + struct.pack("<i", len(raw))) + raw
        elif isinstance(obj, Global):
            o += b"c" + obj.module.encode() + b"\n" + obj.name.encode() + b"\n"
        elif isinstance(obj, tuple):
            o += b"("
            for v in obj:
                self._save(v)
            o += b"t"
        elif isinstance(obj, list):
            o += b"]("
            for v in obj:
                self._save(v)
            o += b"e"
        elif isinstance(obj, collections.OrderedDict):  # Python 2.7: OrderedDict([[k, v], ...])
            self._save(Reduce(Global("collections", "OrderedDict"), ([[k, v] for k, v in obj.items()],)))
        elif isinstance(obj, dict):
            o += b"}("
            for k, v in obj.items():
                self._save(k)
                self._save(v)
            o += b"u"
        elif isinstance(obj, Reduce):
            self._save(obj.func)
            self._save(obj.args)
            o += b"R"
            if obj.state is not None:
                self._save(obj.state)
                o += b"b"
        elif isinstance(obj, NewObj):
            self._save(obj.cls)
            self._save(obj.args)
            o += b"\x81"
            self._save(obj.state)
            o += b"b"
        elif isinstance(obj, PersistentId):
            self._save(obj.pid)
            o += b"Q"
        else:
            raise TypeError(f"Py2Pickler cannot write {type(obj).__name__}")


def numpy_scalar(value: np.generic) -> Reduce:
    """A NumPy scalar as NumPy pickled it on Python 2 (its bytes a Python 2 str)."""
    dtype = Reduce(Global("numpy", "dtype"), (value.dtype.str[1:], 0, 1), (3, "<", None, None, None, -1, -1, 0))
    return Reduce(Global("numpy.core.multiarray", "scalar"), (dtype, Bytes2(value.tobytes())))


_STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage", np.dtype(np.float64): "DoubleStorage"}


@dataclass
class LegacyWriter:
    """Collects storages while the object is described, then writes the whole legacy file.

    ``tensor_form``: ``"v1"`` for ``torch._utils._rebuild_tensor`` (PyTorch 0.1-0.3), ``"v2"`` for
    ``_rebuild_tensor_v2`` (floats inside 0.4's ``Parameter``), ``"class"`` for ``torch.FloatTensor``
    and kin built by NEWOBJ + BUILD (0.1). ``cuda``: storages as ``torch.cuda.*Storage`` at ``'cuda:0'``.
    """

    tensor_form: str = "v1"
    cuda: bool = True
    storages: dict[str, np.ndarray] = field(default_factory=dict)

    def tensor(self, array: np.ndarray):
        array = np.array(array, order="C")  # ascontiguousarray would turn a 0-d array into 1-d
        key = str(94_000_000_000_000 + 4096 * len(self.storages))  # as str(root._cdata) looked
        self.storages[key] = array.reshape(-1)
        module = "torch.cuda" if self.cuda else "torch"
        location = "cuda:0" if self.cuda else "cpu"
        storage = PersistentId(("storage", Global(module, _STORAGE_NAMES[array.dtype]), key, location, array.size, None))
        size = tuple(array.shape)
        stride = tuple(s // array.itemsize for s in array.strides)
        if self.tensor_form == "v1":
            return Reduce(Global("torch._utils", "_rebuild_tensor"), (storage, 0, size, stride))
        if self.tensor_form == "v2":
            tensor = Reduce(Global("torch._utils", "_rebuild_tensor_v2"), (storage, 0, size, stride, False, collections.OrderedDict()))
            if array.dtype.kind == "f":  # 0.4 pickled a Parameter as Parameter(data, requires_grad)
                return Reduce(Global("torch.nn.parameter", "Parameter"), (tensor, False))
            return tensor
        if self.tensor_form == "class":
            cls = Global(module, _STORAGE_NAMES[array.dtype].replace("Storage", "Tensor"))
            return NewObj(cls, (), (storage, 0, size, stride))
        raise ValueError(self.tensor_form)

    def write(self, path, obj) -> None:
        p = Py2Pickler()
        sys_info = {"protocol_version": PROTOCOL_VERSION, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 8}}
        parts = [p.dumps(MAGIC), p.dumps(PROTOCOL_VERSION), p.dumps(sys_info), p.dumps(obj), p.dumps(list(self.storages))]
        for data in self.storages.values():
            parts.append(struct.pack("<q", data.size) + data.astype(data.dtype.newbyteorder("<")).tobytes())
        with open(path, "wb") as f:
            f.write(b"".join(parts))


def write_2017_checkpoint(path, state_dict, *, tensor_form: str = "v1", cuda: bool = True, extra=None) -> None:
    """``state_dict`` (name -> NumPy array) saved as the official 2017 files were: ``{'epoch',
    'arch', 'state_dict' (DataParallel ``module.`` keys), 'best_prec1'}`` with a NumPy float64
    ``best_prec1`` whose bytes are not ASCII, plus ``extra`` items (already pickle descriptions)."""
    w = LegacyWriter(tensor_form=tensor_form, cuda=cuda)
    sd = collections.OrderedDict((k if k.startswith("module.") else f"module.{k}", w.tensor(v)) for k, v in state_dict.items())
    obj = {"epoch": 90, "arch": "resnet50", "state_dict": sd, "best_prec1": numpy_scalar(np.float64(54.74))}
    obj.update(extra or {})
    w.write(path, obj)
