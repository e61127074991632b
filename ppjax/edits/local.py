"""Local adjustments: exposure and clarity that vary smoothly over the photo, as a photo app's
dodge-and-burn or radial filters do. Each is a ``GRID`` x ``GRID`` lattice of knots spread evenly
from edge to edge and read bilinearly at each pixel's position as a fraction of the photo's height
and width, so the same sliders give the same look at any resolution.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ppjax.edits.colour import linear_to_srgb, srgb_to_linear
from ppjax.edits.sliders import Slider

__all__ = ["GRID", "SLIDERS", "read_grid", "pointwise", "describe"]

GRID = 5
SLIDERS = {
    "exposure": Slider(0.3, (GRID, GRID), "EV", "brighter there (dodge; negative: burn)"),
    "clarity": Slider(0.5, (GRID, GRID), "", "more local detail there"),
}


def read_grid(grid: jnp.ndarray, pos: jnp.ndarray) -> jnp.ndarray:
    """(...,) values of a (G, G) knot grid at positions ``pos`` (..., 2), (row, column) fractions in [0, 1]."""
    g = grid.shape[0] - 1
    t = jnp.clip(pos, 0.0, 1.0) * g
    i = jnp.clip(jnp.floor(t), 0, g - 1).astype(jnp.int32)
    f = t - i
    r, c = i[..., 0], i[..., 1]
    fr, fc = f[..., 0], f[..., 1]
    top = grid[r, c] + fc * (grid[r, c + 1] - grid[r, c])
    bottom = grid[r + 1, c] + fc * (grid[r + 1, c + 1] - grid[r + 1, c])
    return top + fr * (bottom - top)


def pointwise(params: dict, x: jnp.ndarray, detail: jnp.ndarray, pos: jnp.ndarray) -> jnp.ndarray:
    """Pixels (..., 3) with the local clarity (``detail`` (...,): luma minus its base) and exposure
    read at ``pos`` (..., 2)."""
    x = x + (read_grid(params["clarity"], pos) * detail)[..., None]
    lin = srgb_to_linear(jnp.clip(x, 0.0, 1.0))
    return x + (linear_to_srgb(lin * (2.0 ** read_grid(params["exposure"], pos))[..., None]) - linear_to_srgb(lin))


def describe(params: dict) -> list[str]:
    out = []
    e, c = np.asarray(params["exposure"]), np.asarray(params["clarity"])
    if np.abs(e).max() >= 0.01:
        out.append(f"local exposure {e.min():+.2f} to {e.max():+.2f} EV")
    if np.abs(c).max() >= 0.005:
        out.append(f"local clarity {c.min() * 100:+.0f} to {c.max() * 100:+.0f}")
    return out
