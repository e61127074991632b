"""The weights-only checkpoint reader against torch.load, and its refusal to run code."""

from __future__ import annotations

import collections
import io
import struct

import numpy as np
import pytest

from ppjax.store.torch_checkpoint import CheckpointFormatError, CheckpointNote, UnsafeCheckpointError, load_torch_checkpoint

from ..py2_checkpoint import Bytes2, Global, Reduce, write_2017_checkpoint

torch = pytest.importorskip("torch")


def _state_dict():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(20, generator=g)
    sd = collections.OrderedDict()
    sd["module.conv.weight"] = torch.randn(4, 3, 3, 3, generator=g)
    sd["module.fc.weight"] = torch.randn(6, 4, generator=g).t()  # non-contiguous strides
    sd["module.view"] = base[5:9]  # storage offset into a shared storage
    sd["module.shared"] = base  # the same storage again
    sd["module.bn.num_batches_tracked"] = torch.tensor(17)  # 0-d int64
    sd["module.half"] = torch.randn(3, generator=g).half()
    sd["module.mask"] = torch.tensor([True, False, True])
    return sd


@pytest.mark.parametrize("zip_layout", [False, True], ids=["legacy", "zip"])
def test_reader_matches_torch_load(tmp_path, zip_layout):
    sd = _state_dict()
    path = tmp_path / "c.pth.tar"
    torch.save({"epoch": 90, "arch": "resnet50", "state_dict": sd, "best_prec1": 54.65}, path, _use_new_zipfile_serialization=zip_layout)
    got = load_torch_checkpoint(path)
    ref = torch.load(path, weights_only=True)
    assert (got["epoch"], got["arch"], got["best_prec1"]) == (90, "resnet50", 54.65)
    assert list(got["state_dict"]) == list(ref["state_dict"])
    for k, v in ref["state_dict"].items():
        a = got["state_dict"][k]
        assert isinstance(a, np.ndarray) and a.dtype == v.numpy().dtype and a.shape == tuple(v.shape), k
        np.testing.assert_array_equal(a, v.numpy())


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create a file if executed


@pytest.mark.parametrize("zip_layout", [False, True], ids=["legacy", "zip"])
def test_pickled_code_is_never_run(tmp_path, zip_layout):
    """Beside the state_dict, a pickled call is dropped with a note; inside it, the file is refused.
    Either way the call never runs."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "x": _Payload(marker)}, path, _use_new_zipfile_serialization=zip_layout)
    with pytest.warns(CheckpointNote, match=r"evil.pth: skipped checkpoint\['x'\]: a (builtins|io).open object"):
        got = load_torch_checkpoint(path)
    assert set(got) == {"state_dict"} and np.array_equal(got["state_dict"]["w"], np.zeros(2, np.float32))
    inside = tmp_path / "evil_inside.pth"
    torch.save({"state_dict": {"w": _Payload(marker)}}, inside, _use_new_zipfile_serialization=zip_layout)
    with pytest.raises(UnsafeCheckpointError, match=r"evil_inside.pth: state_dict entry 'w' refers to (builtins|io).open"):
        load_torch_checkpoint(inside)
    assert not marker.exists()


def test_a_pickled_module_is_refused_by_name(tmp_path):
    path = tmp_path / "whole.pth"
    torch.save(torch.nn.Linear(2, 3), path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError, match=r"whole.pth: the file holds a pickled torch.nn.modules.linear.Linear"):
        load_torch_checkpoint(path)


def test_not_a_checkpoint_and_truncated(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointFormatError):
        load_torch_checkpoint(junk)
    path = tmp_path / "c.pth"
    torch.save({"state_dict": _state_dict()}, path, _use_new_zipfile_serialization=False)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(CheckpointFormatError, match="truncated"):
        load_torch_checkpoint(cut)


def _load_like_the_2017_demo(path):
    """How CSAILVision's demo loads the official files on Python 3 (runs pickled code: test files only)."""
    return torch.load(path, map_location=lambda storage, loc: storage, encoding="latin1", weights_only=False)


def _arrays():
    rng = np.random.default_rng(0)
    return {
        "conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "fc.weight": rng.standard_normal((6, 4)).astype(np.float32).T,  # non-contiguous in the source
        "bn1.running_var": rng.random(4).astype(np.float32),
        "bn1.num_batches_tracked": np.array(17, np.int64),
    }


@pytest.mark.parametrize(
    "form,cuda",
    [("v1", True), ("v2", True), ("class", False)],
    ids=["0.2-rebuild_tensor-cuda", "0.4-rebuild_tensor_v2-parameter-cuda", "0.1-tensor-class"],
)
def test_2017_era_files_load_as_pytorch_loads_them(tmp_path, form, cuda):
    """Python 2 byte strings (one not ASCII), CUDA storages at cuda:0, a NumPy float64 best_prec1, and
    each tensor rebuild form: first proven a valid file by PyTorch itself (with the demo's
    map_location and encoding='latin1'), then read by ppjax's reader to the same values."""
    arrays = _arrays()
    path = tmp_path / "resnet50_places365.pth.tar"
    write_2017_checkpoint(path, arrays, tensor_form=form, cuda=cuda, extra={"note": Bytes2("trained on Titan X \u00e9t\u00e9".encode())})
    ref = _load_like_the_2017_demo(path)
    got = load_torch_checkpoint(path)
    assert ref["note"] == got["note"] == "trained on Titan X \u00c3\u00a9t\u00c3\u00a9"  # latin-1, as PyTorch decodes it
    assert isinstance(got["best_prec1"], np.float64) and got["best_prec1"] == ref["best_prec1"] == np.float64(54.74)
    assert (got["epoch"], got["arch"]) == (ref["epoch"], ref["arch"]) == (90, "resnet50")
    assert list(got["state_dict"]) == list(ref["state_dict"]) == [f"module.{k}" for k in arrays]
    for k, v in ref["state_dict"].items():
        a = got["state_dict"][k]
        assert a.dtype == v.detach().numpy().dtype and a.shape == tuple(v.shape), k
        np.testing.assert_array_equal(a, v.detach().numpy())
        np.testing.assert_array_equal(a, arrays[k.removeprefix("module.")])


def test_cuda_tensor_class_form_reads(tmp_path):
    """``torch.cuda.FloatTensor`` objects (0.1, saved on a GPU): PyTorch without CUDA cannot load
    them at all; the reader needs only their storage, so it can."""
    arrays = _arrays()
    path = tmp_path / "c.pth.tar"
    write_2017_checkpoint(path, arrays, tensor_form="class", cuda=True)
    got = load_torch_checkpoint(path)["state_dict"]
    for k, v in arrays.items():
        np.testing.assert_array_equal(got[f"module.{k}"], v)


def test_unrebuildable_metadata_is_skipped_with_a_note(tmp_path):
    """A global the reader does not know (here one that would run a shell command) and a NumPy
    object scalar are dropped, each with a note; the state_dict loads; nothing runs."""
    marker = tmp_path / "ran"
    path = tmp_path / "c.pth.tar"
    dtype_o = Reduce(Global("numpy", "dtype"), ("O8", 0, 1), (3, "|", None, None, None, -1, -1, 63))
    extra = {
        "optimizer": Reduce(Global("os", "system"), (f"touch {marker}",)),
        "odd": Reduce(Global("numpy.core.multiarray", "scalar"), (dtype_o, Bytes2(b"12345678"))),
    }
    write_2017_checkpoint(path, _arrays(), extra=extra)
    with pytest.warns(CheckpointNote) as notes:
        got = load_torch_checkpoint(path)
    text = " | ".join(str(n.message) for n in notes)
    assert "skipped checkpoint['optimizer']: a os.system object" in text and "skipped checkpoint['odd']" in text
    assert set(got) == {"epoch", "arch", "state_dict", "best_prec1"} and not marker.exists()


def _legacy_bytes_with_fc_bias_stride(stride: int) -> bytes:
    """An official-layout legacy file whose ``fc.bias`` pickle says stride (``stride``,) instead of (1,)."""
    buf = io.BytesIO()
    sd = collections.OrderedDict([("module.fc.weight", torch.randn(8, 5)), ("module.fc.bias", torch.randn(8))])
    torch.save({"arch": "resnet50", "state_dict": sd}, buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue()
    # The bias is the only 1-d tensor: its size tuple (8,) and stride tuple (1,) are pickled as
    # K\x08\x85 K\x01\x85 (BININT1 8, TUPLE1, BININT1 1, TUPLE1).
    pattern = b"K\x08\x85q"
    at = data.index(pattern)
    stride_at = data.index(b"K\x01\x85", at + len(pattern))
    return data[:stride_at] + b"J" + struct.pack("<i", stride) + data[stride_at + 2 :]


def test_a_stride_past_the_storage_is_refused_before_any_view(tmp_path):
    path = tmp_path / "strided.pth.tar"
    path.write_bytes(_legacy_bytes_with_fc_bias_stride(1_000_000))
    with pytest.raises(CheckpointFormatError, match=r"strided.pth.tar: a tensor on storage .* reaches element 7000000"):
        load_torch_checkpoint(path)
    path.write_bytes(_legacy_bytes_with_fc_bias_stride(1))  # the same edit with the true stride reads
    assert load_torch_checkpoint(path)["state_dict"]["module.fc.bias"].shape == (8,)


def test_a_storage_claiming_more_than_the_file_is_refused(tmp_path):
    """A count of 10^12 elements is checked against the file's size before anything is allocated."""
    path = tmp_path / "c.pth"
    torch.save({"state_dict": {"w": torch.arange(4.0)}}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    count_at = len(data) - 4 * 4 - 8
    assert struct.unpack("<q", data[count_at : count_at + 8]) == (4,)
    path.write_bytes(data[:count_at] + struct.pack("<q", 10**12) + data[count_at + 8 :])
    with pytest.raises(CheckpointFormatError, match="claims 1,000,000,000,000 elements"):
        load_torch_checkpoint(path)


def test_a_pickle_cannot_set_the_state_of_the_readers_own_objects(tmp_path):
    """BUILD on a stand-in the reader shares between files (here the tensor rebuild function) would
    let one file change how the next is read: refused, and the stand-in stays as it was."""
    from ppjax.store import torch_pickle

    from ..py2_checkpoint import Py2Pickler

    pickler = Py2Pickler()
    pickler.out = bytearray(b"\x80\x02")
    pickler._save(Global("torch._utils", "_rebuild_tensor"))
    pickler._save((None, {"__defaults__": (1,)}))  # BUILD's slot state: setattr on the function
    build_on_function = bytes(pickler.out) + b"b."
    path = tmp_path / "c.pth.tar"
    header = b"".join(Py2Pickler().dumps(v) for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    path.write_bytes(header + build_on_function)
    with pytest.raises(CheckpointFormatError, match="sets the state of a function"):
        load_torch_checkpoint(path)
    assert torch_pickle._rebuild_tensor.__defaults__ is None


def _legacy_file(path, main_pickle: bytes, storages: dict[str, np.ndarray]) -> None:
    from ..py2_checkpoint import Py2Pickler

    p = Py2Pickler()
    parts = [p.dumps(v) for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})]
    parts += [main_pickle, p.dumps(list(storages))]
    parts += [struct.pack("<q", a.size) + a.tobytes() for a in storages.values()]
    path.write_bytes(b"".join(parts))


def test_shared_references_are_not_expanded(tmp_path):
    """Sixty lists, each holding the one before twice (pickle's memo makes that 13 bytes a level):
    2^60 leaves as a tree, 60 objects as stored. The reader keeps them shared."""
    level = b"(h\x00h\x00lq\x00"  # MARK, the memoised list twice, LIST, memoise the new one
    nest = b"]q\x000" + (level + b"0") * 59 + level  # each level popped but the last ('0': POP)
    main = b"\x80\x02}q\x01(U\x04nest" + nest + b"u."
    _legacy_file(tmp_path / "c.pth", main, {})
    got = load_torch_checkpoint(tmp_path / "c.pth")["nest"]
    for _ in range(60):
        assert len(got) == 2 and got[0] is got[1]
        got = got[0]


def test_repeated_views_of_one_storage_cannot_multiply_memory(tmp_path):
    """Three thousand tensors, each a full view of one 1 MB storage: 3 GB if each were copied.
    Refused once the tensors add up to more than twice the file."""
    from ..py2_checkpoint import Global, PersistentId, Py2Pickler, Reduce

    data = np.zeros(250_000, np.float32)
    storage = PersistentId(("storage", Global("torch", "FloatStorage"), "0", "cpu", data.size, None))
    tensor = Reduce(Global("torch._utils", "_rebuild_tensor"), (storage, 0, (data.size,), (1,)))
    sd = collections.OrderedDict((f"w{i}", tensor) for i in range(3000))
    _legacy_file(tmp_path / "c.pth", Py2Pickler().dumps({"state_dict": sd}), {"0": data})
    with pytest.raises(CheckpointFormatError, match="more than twice the bytes in the file"):
        load_torch_checkpoint(tmp_path / "c.pth")
