"""Local adjustments: exposure, clarity and tone curves that vary smoothly over the photo, as a
photo app's dodge-and-burn, radial filters or masked curves do. Each slider is a ``GRID`` x ``GRID``
lattice of knots spread evenly from edge to edge and read bilinearly at each pixel's position as a
fraction of the photo's height and width, so the same sliders give the same look at any resolution.

The local curves are a grid of monotone curves (:mod:`ppjax.edits.curves`, ``PIECES`` pieces each,
per RGB channel and on luma): a pixel is read off the four curves of the knots around it and the
four values are blended bilinearly. A blend of increasing curves with positive weights increases,
so at any one place the edit never turns a tone over; across the photo the curves differ (a bluer
sky at the top, warmer shadows at the bottom), which is what moves a classifier that a single set
of curves does not (measured in docs/edits.md).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ppjax.edits.colour import linear_to_srgb, luma, srgb_to_linear
from ppjax.edits.curves import deviations, segment
from ppjax.edits.sliders import Slider

__all__ = ["GRID", "PIECES", "SLIDERS", "read_grid", "read_curves", "pointwise", "describe"]

GRID = 5
#: Pieces of each local curve (the global curves have 16; a local one needs fewer, as the grid
#: multiplies them by 25).
PIECES = 8
SLIDERS = {
    "exposure": Slider(0.3, (GRID, GRID), "EV", "brighter there (dodge; negative: burn)"),
    "clarity": Slider(0.5, (GRID, GRID), "", "more local detail there"),
    "rgb": Slider(0.3, (GRID, GRID, 3, PIECES), "slope - 1", "a channel's curve steeper there, over that piece"),
    "luma": Slider(0.4, (GRID, GRID, PIECES), "slope - 1", "the luma curve steeper there, over that piece"),
}


def _cell(pos: jnp.ndarray, knots: int):
    """The top-left knot (row, column) of each position's cell and the fractions (row, column) across it."""
    i, f = segment(pos, knots - 1)
    return i[..., 0], i[..., 1], f[..., 0], f[..., 1]


def read_grid(grid: jnp.ndarray, pos: jnp.ndarray) -> jnp.ndarray:
    """(...,) values of a (G, G) knot grid at positions ``pos`` (..., 2), (row, column) fractions in [0, 1]."""
    r, c, fr, fc = _cell(pos, grid.shape[0])
    top = grid[r, c] + fc * (grid[r, c + 1] - grid[r, c])
    bottom = grid[r + 1, c] + fc * (grid[r + 1, c + 1] - grid[r + 1, c])
    return top + fr * (bottom - top)


def read_curves(dev: jnp.ndarray, v: jnp.ndarray, pos: jnp.ndarray) -> jnp.ndarray:
    """(...,) values ``v`` (..., in [0, 1]) through a (G, G) grid of curves whose knot deviations
    are ``dev`` (G, G, K + 1) (:func:`ppjax.edits.curves.deviations`), at positions ``pos`` (..., 2):
    each of the four surrounding knots' curves read at ``v``, blended bilinearly. Exactly ``v`` for
    zero deviations."""
    r, c, fr, fc = _cell(pos, dev.shape[0])
    j, f = segment(v, dev.shape[-1] - 1)

    def at(rr, cc):
        lo = dev[rr, cc, j]
        return lo + f * (dev[rr, cc, j + 1] - lo)

    top = at(r, c) + fc * (at(r, c + 1) - at(r, c))
    bottom = at(r + 1, c) + fc * (at(r + 1, c + 1) - at(r + 1, c))
    return v + top + fr * (bottom - top)


def pointwise(params: dict, x: jnp.ndarray, detail: jnp.ndarray, pos: jnp.ndarray) -> jnp.ndarray:
    """Pixels (..., 3) with the local clarity (``detail`` (...,): luma minus its base), exposure and
    curves (channels, then luma, whose change goes to every channel) read at ``pos`` (..., 2)."""
    x = x + (read_grid(params["clarity"], pos) * detail)[..., None]
    lin = srgb_to_linear(jnp.clip(x, 0.0, 1.0))
    x = x + (linear_to_srgb(lin * (2.0 ** read_grid(params["exposure"], pos))[..., None]) - linear_to_srgb(lin))
    dev = deviations(params["rgb"])
    x = jnp.stack([read_curves(dev[:, :, ch], x[..., ch], pos) for ch in range(3)], axis=-1)
    y = luma(x)
    return x + (read_curves(deviations(params["luma"]), y, pos) - y)[..., None]


def describe(params: dict) -> list[str]:
    out = []
    e, c = np.asarray(params["exposure"]), np.asarray(params["clarity"])
    if np.abs(e).max() >= 0.01:
        out.append(f"local exposure {e.min():+.2f} to {e.max():+.2f} EV")
    if np.abs(c).max() >= 0.005:
        out.append(f"local clarity {c.min() * 100:+.0f} to {c.max() * 100:+.0f}")
    bend = max(float(np.abs(np.asarray(deviations(jnp.asarray(params[k])))).max()) for k in ("rgb", "luma")) * 255.0
    if bend >= 0.5:
        out.append(f"local curves up to {bend:.0f}/255")
    return out
