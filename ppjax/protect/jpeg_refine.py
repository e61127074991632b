"""The exact channel's answer to a JPEG encoder that un-protected a photo: more lattice steps
against the classifiers seen *behind* a differentiable JPEG round trip (:mod:`ppjax.ops.jpeg`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ppjax.models.layers import ghostly
from ppjax.protect.lattice import quantise255

__all__ = ["refine_for_jpeg"]


def refine_for_jpeg(p, key: jax.Array, x01, start01, labels, quality: int) -> np.ndarray:
    """Protector ``p``'s lattice steps from ``start01`` (what was encoded last), within the budget
    around the originals ``x01`` ((N, H, W, 3) in [0, 1]), against its classifiers behind a JPEG
    round trip at ``quality``: the batch to encode, on the lattice. The verdict is left to
    :meth:`~ppjax.protect.Protector.verify` on the decoded file, not to the differentiable stand-in."""
    programs = p._programs["jpeg"]
    if quality not in programs:
        programs[quality] = jax.jit(lambda *args: _refine(p, quality, *args))
    return np.asarray(programs[quality](p.variables, key, jnp.asarray(x01, jnp.float32), jnp.asarray(start01, jnp.float32), labels))


def _refine(p, quality, variables, key, x01, start01, labels):
    from ppjax.ops.jpeg import jpeg_round_trip

    behind = tuple(t._replace(apply=lambda v, x, ghost=None, apply=t.apply: apply(v, jpeg_round_trip(x, quality), **ghostly(ghost))) for t in p._bound(variables)[0])
    q = quantise255(p._lattice_refinement(behind)(key, x01, labels, start=start01), jnp.rint(x01 * 255.0), p.eps, p.min_psnr, perceptual=p.perceptual)
    return q / 255.0
