"""The weights-only checkpoint reader against torch.load, and its refusal to run code."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from ppjax.torch_checkpoint import CheckpointFormatError, UnsafeCheckpointError, load_torch_checkpoint

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
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "x": _Payload(marker)}, path, _use_new_zipfile_serialization=zip_layout)
    with pytest.raises(UnsafeCheckpointError, match="open"):
        load_torch_checkpoint(path)
    assert not marker.exists()


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
