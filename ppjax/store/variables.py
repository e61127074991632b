"""Strict loading of converted ``.safetensors`` weights into a Flax variable tree.

Converted files hold flat keys such as ``params/layer1/0/conv1/kernel``. Loading compares them with
the module's own variable shapes and fails listing every missing, unexpected and mis-shaped entry;
nothing is silently skipped, initialised at random, or broadcast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict
from safetensors.numpy import load_file, save_file

__all__ = ["CheckpointMismatchError", "flat_shapes", "fill_strict", "load_variables", "save_variables"]

SEP = "/"


class CheckpointMismatchError(ValueError):
    """Raised when a checkpoint's keys or shapes differ from what a module expects."""

    def __init__(self, what: str, missing=(), unexpected=(), wrong_shape=()):
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.wrong_shape = sorted(wrong_shape)
        lines = [f"{what} does not match the model:"]
        if self.missing:
            lines.append(f"  missing ({len(self.missing)}): " + ", ".join(self.missing))
        if self.unexpected:
            lines.append(f"  unexpected ({len(self.unexpected)}): " + ", ".join(self.unexpected))
        if self.wrong_shape:
            lines.append(
                f"  wrong shape ({len(self.wrong_shape)}): "
                + ", ".join(f"{k} {got} (expected {want})" for k, got, want in self.wrong_shape)
            )
        super().__init__("\n".join(lines))


def flat_shapes(variables_or_shapes: Any) -> dict[str, tuple[int, ...]]:
    """Flat ``a/b/c`` key -> shape for a variable tree (arrays or ShapeDtypeStructs)."""
    flat = flatten_dict(jax.tree_util.tree_map(lambda a: a, dict(variables_or_shapes)), sep=SEP)
    return {k: tuple(v.shape) for k, v in flat.items()}


def fill_strict(expected: Mapping[str, tuple[int, ...]], arrays: Mapping[str, np.ndarray], what: str) -> dict:
    """Nested variable tree from flat ``arrays``, which must hold exactly the ``expected`` keys and shapes."""
    missing = set(expected) - set(arrays)
    unexpected = set(arrays) - set(expected)
    wrong = [
        (k, tuple(arrays[k].shape), expected[k])
        for k in sorted(set(expected) & set(arrays))
        if tuple(arrays[k].shape) != tuple(expected[k])
    ]
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(what, missing, unexpected, wrong)
    return unflatten_dict({k: np.asarray(v) for k, v in arrays.items()}, sep=SEP)


def save_variables(path: str | Path, flat: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
    """Write flat arrays to ``path`` (safetensors); callers handle atomic placement."""
    save_file({k: np.ascontiguousarray(v) for k, v in flat.items()}, str(path), metadata=dict(metadata or {}))


def load_variables(path: str | Path, expected: Mapping[str, tuple[int, ...]]) -> dict:
    """Read a converted safetensors file and fill a variable tree strictly (see :func:`fill_strict`)."""
    return fill_strict(expected, load_file(str(path)), str(path))
