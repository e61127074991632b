"""Every local device: four CPU devices (``JAX_NUM_CPU_DEVICES=4``, in a child process, since the
device count is fixed when JAX starts) write the same bytes as one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ..conftest import ROOT

_CHILD = r"""
import json, sys
from pathlib import Path
import jax, jax.numpy as jnp
from ppjax import attacks
from ppjax.protect import Protector, protect_files, select_devices
from tests.attack_models import TinyNet

src, out = Path(sys.argv[1]), Path(sys.argv[2])
module = TinyNet()
target = attacks.Target(module.apply, module.init(jax.random.key(3), jnp.zeros((1, 32, 32, 3))), attacks.cross_entropy())
used = []
def recording(method):
    def call(self, *args, **kwargs):
        used.append(str(next(iter(jax.tree_util.tree_leaves(self.variables))).devices()))
        return method(self, *args, **kwargs)
    return call
Protector.__call__ = recording(Protector.__call__)
Protector.protect_canvas = recording(Protector.protect_canvas)
report = {"devices": len(jax.devices())}
for channel in ("exact", "social"):
    protector = Protector([target], eps=4.0, steps=4, channel=channel)
    for n in (4, 1):
        used.clear()
        jobs = [(f, out / channel / str(n) / f.name) for f in sorted(src.iterdir())]
        results = protect_files(protector, jobs, max_batch=4, devices=select_devices(n), channel_rounds=1)
        report[f"{channel} {n}"] = {"errors": [r.error for r in results if r.error], "devices_used": sorted(set(used)), "batches": len(used)}
print(json.dumps(report))
"""


@pytest.mark.slow
def test_four_devices_write_the_same_bytes_as_one(tmp_path, photos):
    """Both channels: the exact one (a program per size) and the social one (photos of two sizes
    sharing one canvas's program)."""
    src = tmp_path / "in"
    src.mkdir()
    # Two sizes, so two shapes; 7 and 5 images in batches of at most 4: full and partial batches,
    # bucket sizes 4 and 1, and a decode chunk (8) that ends inside a size group.
    for k in range(7):
        Image.fromarray(photos[k % 6]).save(src / f"a{k}.png")
    for k in range(5):
        Image.fromarray(np.ascontiguousarray(photos[k][:24, :, :].repeat(2, axis=1)[:, :40])).save(src / f"b{k}.png")
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4
    names = sorted(p.name for p in src.iterdir())
    for channel in ("exact", "social"):
        four, one = report[f"{channel} 4"], report[f"{channel} 1"]
        assert four["errors"] == [] and one["errors"] == []
        assert len(four["devices_used"]) > 1 and len(one["devices_used"]) == 1
        assert four["batches"] == one["batches"]  # the same batches, spread over devices
        for name in names:
            a, b = (tmp_path / "out" / channel / n / name for n in ("1", "4"))
            assert a.read_bytes() == b.read_bytes(), (channel, name)
        changed = [np.any(np.asarray(Image.open(tmp_path / "out" / channel / "1" / n)) != np.asarray(Image.open(src / n))) for n in names]
        assert all(changed), channel
