"""A model's outputs for images of any size through a few compiled programs, not one per size.

A jitted model compiles once per input shape: an album whose photos come in thirty sizes compiles
thirty programs (seconds each on a CPU, a minute and more for the large networks) before the last
photo is classified. Here each (h, w) batch goes on a canvas whose sides come from a short ladder
(:data:`SIDES`: steps of about a quarter, so a canvas over :data:`SQUARE_UP_TO` holds at most about
1.6 times the photo's pixels; smaller photos go on square canvases, where a program's compile costs
more than the padding), at the top left, and the model runs through :func:`ppjax.models.masked.masked_apply` with
the photo's own layer extents, which gives the photo's own outputs (tested for every family ppjax
ports, within float rounding). Every size that lands on the same canvas shares its program; a
phone's album of 4032x3024 and 3024x4032 photos needs two.

Left as they are (one program per size, as :meth:`ppjax.models.Model.compiled`): a model that
resizes any input to its fixed side itself (its program is the resize plus the model at that side),
a size over the ladder's top, and a size whose layers do not line up with the canvas's.
"""

from __future__ import annotations

import bisect
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ppjax.models.masked import level_extents, masked_apply

__all__ = ["SIDES", "SQUARE_UP_TO", "canvas_shape", "canvas_side", "any_size"]

#: Canvas sides (pixels), each about a quarter over the last, multiples of 32 (every stride of the
#: ported networks divides them, so a canvas's layers have whole sizes).
SIDES = (64, 96, 128, 160, 192, 224, 256, 320, 384, 480, 576, 704, 864, 1088, 1344, 1664, 2048, 2560, 3200, 4096)


#: Photos whose long side fits this canvas side go on a square canvas: below it a program's compile
#: (seconds) outweighs what the larger canvas adds to the run, so fewer programs win.
SQUARE_UP_TO = 576


def canvas_shape(h: int, w: int) -> tuple[int, int]:
    """The (height, width) of the canvas an (h, w) photo is classified on: square up to
    :data:`SQUARE_UP_TO`, else each axis's :func:`canvas_side`."""
    side = canvas_side(max(h, w))
    return (side, side) if side <= SQUARE_UP_TO else (canvas_side(h), canvas_side(w))


def canvas_side(n: int) -> int:
    """The smallest of :data:`SIDES` holding ``n`` pixels, else ``n`` itself (over the top)."""
    i = bisect.bisect_left(SIDES, n)
    return SIDES[i] if i < len(SIDES) else n


def any_size(model, then: Callable[[jnp.ndarray], jnp.ndarray] | None = None) -> Callable[[Any], np.ndarray]:
    """``fn(x01)`` for (N, H, W, 3) float pixels in [0, 1] -> ``then(model outputs)`` ((N, ...)),
    as :meth:`ppjax.models.Model.compiled`, computed on the canvas :func:`canvas_shape` gives: one
    compiled program per (N, canvas), whatever the photos' sizes. ``fn.programs()``: how many it has
    compiled so far."""
    finish = then or (lambda y: y)
    plain = jax.jit(lambda variables, x01: finish(model.apply(variables, x01)))
    masked = jax.jit(lambda variables, x01, extents: finish(masked_apply(model.apply, variables, x01, extents)))

    @functools.lru_cache(maxsize=512)
    def extents_for(h: int, w: int, canvas: tuple[int, int]) -> np.ndarray | None:
        try:
            return level_extents(model.apply, model.variables, h, w, canvas)
        except ValueError:  # its layers do not line up with the canvas's: its own program
            return None

    def fn(x01):
        x = np.asarray(x01, np.float32)
        n, h, w = x.shape[:3]
        canvas = canvas_shape(h, w)
        extents = None if model.spec.fixed_size is not None or canvas == (h, w) else extents_for(h, w, canvas)
        if extents is None:
            return np.asarray(plain(model.variables, jnp.asarray(x)))
        on_canvas = np.zeros((n, *canvas, x.shape[3]), np.float32)
        on_canvas[:, :h, :w] = x
        batch_extents = jnp.asarray(np.broadcast_to(extents, (n, *extents.shape)))
        return np.asarray(masked(model.variables, jnp.asarray(on_canvas), batch_extents))

    fn.programs = lambda: plain._cache_size() + masked._cache_size()
    return fn
