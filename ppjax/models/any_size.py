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

With a ``programs`` folder (the store's, :func:`ppjax.store.programs_folder`) what a process would
otherwise redo every run is kept there: each canvas's traced program (as ``ppjax protect``'s
:class:`~ppjax.store.programs.CachedProgram`; XLA's persistent cache keeps the compiled code) and
each photo size's layer extents (finding them traces the model, about 1.5 s a size on a 2-core CPU).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import hashlib
import json
import os
import threading
from pathlib import Path
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


def any_size(
    model, then: Callable[[jnp.ndarray], jnp.ndarray] | None = None, *, then_name: str = "outputs", programs: str | os.PathLike | None = None
) -> Callable[[Any], np.ndarray]:
    """``fn(x01)`` for (N, H, W, 3) float pixels in [0, 1] -> ``then(model outputs)`` ((N, ...)),
    as :meth:`ppjax.models.Model.compiled`, computed on the canvas :func:`canvas_shape` gives: one
    compiled program per (N, canvas), whatever the photos' sizes. ``fn.programs()``: how many it has
    compiled or loaded so far. ``programs``: a folder keeping the traced programs and the sizes'
    extents for later processes (None: this process only); ``then_name`` names ``then`` there (two
    different ``then`` must not share a name)."""
    from ppjax.store.programs import CachedProgram, ProgramCache

    finish = then or (lambda y: y)
    spec = dataclasses.asdict(model.spec)
    cache = None if programs is None else ProgramCache(Path(programs), json.dumps({"any_size": spec, "then": then_name}, sort_keys=True))
    plain = CachedProgram(jax.jit(lambda variables, x01: finish(model.apply(variables, x01))), {"program": "any-size-plain"}, cache)
    masked = CachedProgram(
        jax.jit(lambda variables, x01, extents: finish(masked_apply(model.apply, variables, x01, extents))), {"program": "any-size-masked"}, cache
    )
    kept = None if programs is None else _KeptExtents(Path(programs) / "extents" / f"{_model_key(model)}.json")

    @functools.lru_cache(maxsize=512)
    def extents_for(h: int, w: int, canvas: tuple[int, int]) -> np.ndarray | None:
        key = f"{h}x{w}@{canvas[0]}x{canvas[1]}"
        if kept is not None and kept.has(key):
            return kept.get(key)
        try:
            found = level_extents(model.apply, model.variables, h, w, canvas)
        except ValueError:  # its layers do not line up with the canvas's: its own program
            found = None
        if kept is not None:
            kept.put(key, found)
        return found

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

    fn.programs = lambda: plain.count() + masked.count()
    return fn


def _model_key(model) -> str:
    """What a model's layer extents depend on: its spec, its weights' shapes and ppjax's source."""
    from ppjax.store.programs import source_digest

    shapes = [(jax.tree_util.keystr(k), tuple(np.shape(v))) for k, v in jax.tree_util.tree_leaves_with_path(model.variables)]
    text = json.dumps([model.spec.name, dataclasses.asdict(model.spec), shapes, source_digest()], default=str)
    return f"{model.spec.name}-{hashlib.sha256(text.encode()).hexdigest()[:24]}"


class _KeptExtents:
    """One model's ``{"HxW@CHxCW": extents or None}`` in a JSON file: read once, rewritten whole
    (atomically) when a size is added. Two processes adding sizes at once may each drop the
    other's, which only costs a later run the trace again."""

    def __init__(self, path: Path):
        self.path, self._lock, self._table = path, threading.Lock(), None

    def _load(self) -> dict:
        if self._table is None:
            from ppjax.store.programs import read_json_table

            self._table = read_json_table(self.path)  # none yet, or damaged: start again
        return self._table

    def has(self, key: str) -> bool:
        with self._lock:
            return key in self._load()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            value = self._load()[key]
        return None if value is None else np.asarray(value, np.int32)

    def put(self, key: str, extents: np.ndarray | None) -> None:
        from ppjax.store.programs import write_atomically

        with self._lock:
            table = self._load()
            table[key] = None if extents is None else np.asarray(extents).tolist()
            write_atomically(self.path, json.dumps(table).encode())
