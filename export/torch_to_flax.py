"""The rule that maps a PyTorch state_dict onto a Flax variable tree with mirrored names.

It is pure and framework-free (NumPy in, NumPy out), so ``ppjax models import`` can run it without
torch. The rule, per PyTorch key ``a.b.c.<leaf>`` and the Flax module's expected tree:

============================  ==========================  =================================
PyTorch leaf                  Flax key                    array
============================  ==========================  =================================
conv ``weight`` (O,I/g,kh,kw) ``params/a/b/c/kernel``     transposed to (kh,kw,I/g,O)
linear ``weight`` (O,I)       ``params/a/b/c/kernel``     transposed to (I,O)
norm ``weight``               ``params/a/b/c/scale``      as is
``bias``                      ``params/a/b/c/bias``       as is
``running_mean`` / ``_var``   ``batch_stats/a/b/c/mean``  as is (``var``)
``num_batches_tracked``       dropped                     a training counter
============================  ==========================  =================================

Whether a 1-D ``weight`` is a norm scale is decided by the expected tree, not guessed.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ppjax.store.variables import SEP, CheckpointMismatchError

_DROPPED_LEAVES = {"num_batches_tracked"}


def _flax_key(torch_key: str, expected: Mapping[str, tuple[int, ...]]) -> str | None:
    *path, leaf = torch_key.split(".")
    base = SEP.join(path)
    candidates = {
        "weight": [f"params/{base}/kernel", f"params/{base}/scale"],
        "bias": [f"params/{base}/bias"],
        "running_mean": [f"batch_stats/{base}/mean"],
        "running_var": [f"batch_stats/{base}/var"],
    }.get(leaf, [])
    return next((c for c in candidates if c in expected), None)


def _to_flax_layout(array: np.ndarray, flax_key: str) -> np.ndarray:
    if flax_key.endswith("/kernel"):
        if array.ndim == 4:
            return np.transpose(array, (2, 3, 1, 0))
        if array.ndim == 2:
            return array.T
    return array


def _torch_name(flax_key: str) -> str:
    collection, *path, leaf = flax_key.split(SEP)
    torch_leaf = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}[leaf]
    return ".".join([*path, torch_leaf])


def torch_to_flax(state_dict: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], what: str) -> dict[str, np.ndarray]:
    """Flat Flax arrays (float32) from a PyTorch state_dict, checked against ``expected`` shapes.

    Fails with :class:`CheckpointMismatchError` listing, in PyTorch names, every parameter the
    model needs that the state_dict lacks, every state_dict entry the model has no place for, and
    every shape that differs.
    """
    out: dict[str, np.ndarray] = {}
    unexpected = []
    for key, value in state_dict.items():
        if key.rsplit(".", 1)[-1] in _DROPPED_LEAVES:
            continue
        fk = _flax_key(key, expected)
        if fk is None:
            unexpected.append(key)
            continue
        out[fk] = np.asarray(_to_flax_layout(np.asarray(value), fk), dtype=np.float32)
    missing = [_torch_name(k) for k in expected if k not in out]
    wrong = [(_torch_name(k), out[k].shape, expected[k]) for k in out if out[k].shape != tuple(expected[k])]
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(what, missing, unexpected, wrong)
    return out
