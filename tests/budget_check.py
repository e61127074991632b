"""The perceptual budget checked on written bytes, as `ppjax evaluate` measures them."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ppjax.ops.perceptual import allowance
from ppjax.protect.quality import ciede2000_pixels

#: Float32 rounding: the allowance of a full-size photo is computed in tiles, here in one piece.
ROUNDING = 1e-4


def over_allowance(original: np.ndarray, changed: np.ndarray, flat: float, busy: float) -> float:
    """The largest excess of a pixel's CIEDE2000 over its allowance (<= :data:`ROUNDING`: the
    budget holds), both (H, W, 3) uint8."""
    limit = np.asarray(allowance(jnp.asarray(original, jnp.float32)[None] / 255.0, flat, busy))[0]
    return float(np.max(ciede2000_pixels(original, changed) - limit))
