"""Every local device of one process: which devices, and a protector per device.

A batch runs whole on one device, and the devices take batches in turn (one host thread each; a
device's work releases the GIL). The batches are formed exactly as for one device, and each device
runs the same compiled program on the same shapes, so the bytes written do not depend on the
device count. The weights are placed on all devices at once as one array replicated over a
one-axis mesh (``NamedSharding(mesh, P())``), and each device's protector takes its own copy.

Why not one program partitioned over the mesh (``jit`` with a sharded batch, or ``shard_map``):
measured on this project's CPU devices, XLA compiles the partitioned program differently from the
single-device one, and the differentiable JPEG's rounding then flips (414 of 1.2 million decoded
values of 8 photos at 224x224); sign steps turn such flips into different bytes (5,527 pixels
of 8 photos after 5 steps of the social channel). The same single-device program on every device
gives the same bytes (checked by tests/protect/test_devices.py).
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["select_devices", "replicas", "data_mesh"]


def select_devices(spec: str | int = "all") -> list:
    """The local devices to use: ``"all"``, or the first ``N`` (an int or a numeric string)."""
    local = jax.local_devices()
    if isinstance(spec, str):
        if spec.strip().lower() == "all":
            return list(local)
        try:
            spec = int(spec)
        except ValueError:
            raise ValueError(f"--devices must be 'all' or a number, not {spec!r}") from None
    if spec < 1:
        raise ValueError("--devices must be at least 1")
    if spec > len(local):
        raise ValueError(f"--devices {spec}: this process sees only {len(local)} {local[0].platform} device(s)")
    return list(local[:spec])


def data_mesh(devices: Sequence) -> Mesh:
    """A one-axis mesh ("data") over ``devices``."""
    return Mesh(np.asarray(list(devices)), ("data",))


def replicas(protector, devices: Sequence) -> list:
    """One protector per device, sharing ``protector``'s compiled programs, each holding its own
    copy of the weights on its device (so its programs run there)."""
    devices = list(devices)
    mesh = data_mesh(devices)
    everywhere = jax.device_put(protector.variables, NamedSharding(mesh, PartitionSpec()))
    copies = []
    for d in devices:
        local = jax.tree_util.tree_map(lambda a, d=d: next(s.data for s in a.addressable_shards if s.device == d), everywhere)
        copies.append(protector.with_variables(local))
    return copies
