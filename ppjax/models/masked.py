"""A model run on a photo placed at the top left of a larger canvas, giving the photo's own logits.

A convolutional network on a canvas sees the padding: the first convolution reads it at the photo's
edge, every later layer reads what the earlier ones made of it, and the global pooling averages
over it. Keeping, in every layer, each activation outside the photo's own extent at zero undoes all
of that, because the models here pad their convolutions with zeros on the right and bottom (or on
both sides, fixed) and pool after a ReLU: a layer on the canvas then computes, inside the photo's
extent, exactly what it computes on the photo alone. The extents are those the photo has in each
layer when run alone, recorded once per photo size by tracing the model abstractly
(:func:`record_extents`), and passed in as data, so one compiled program serves every size.

Flax's method interception does the masking without touching the model code, only where the
padding could be read. Of the model's leaf modules (those that call no other module: convolutions,
BatchNorm, dense layers), a convolution with a kernel wider than one pixel gets its input masked
(which also covers what the functions between modules make of the padding, such as the
normalisation before the first convolution); the output of a module call (a leaf's, or a block's,
which may add the padding of several, as a residual sum does) is masked only where the first leaf
called after it does not take an input of its shape, that is where a pooling (a max pool, the
global mean) may come between and read the padding. Elsewhere the padding's values pass through
elementwise steps (BatchNorm, activations, residual sums, 1x1 convolutions) to a leaf that masks
them, or to padding no valid output reads. This assumes what holds for every model here: no
function between modules reads neighbouring pixels without changing the shape, and what a pooling
reads is one module call's output. Masking every module's input and output instead cost half as
much again as the model (EfficientNet-Lite0's input gradient on a 384 canvas, 2 cores: 200 ms
against 121 ms unmasked; a mask after a depthwise convolution keeps XLA from fusing its gradient).
The first 2-D input after the spatial layers (the classifier head after the global mean) is
rescaled from the canvas's mean to the photo's. Tests check every model family against the photo
alone, its logits and its input gradient.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ppjax.models.layers import ghostly

__all__ = ["record_extents", "level_extents", "masked_apply"]


def _spatial(a) -> bool:
    return getattr(a, "ndim", None) == 4


def record_extents(apply: Callable[[Any, jnp.ndarray], jnp.ndarray], variables, h: int, w: int) -> np.ndarray:
    """(K, 4) int32: for each module call of ``apply`` on a (1, h, w, 3) image, in call order, the
    (height, width) of its input and of its output (0, 0 where not an image). Abstract: nothing runs."""
    return _record(apply, h, w, variables)[:, :4]


def _masked_outputs(rows: np.ndarray) -> np.ndarray:
    """(K,) bool: which calls' outputs :func:`masked_apply` masks, from the calls' record ``rows``
    (:func:`_record`; see the module docstring): a spatial output (a leaf's, or a composite
    module's, which may add the padding of several) where the first leaf called after it does not
    take an input of its shape."""
    leaves = np.flatnonzero(rows[:, 4] == np.arange(len(rows)) + 1)  # no module was called inside them
    out = np.zeros(len(rows), bool)
    for i, (_, _, oh, ow, next_call) in enumerate(rows):
        following = leaves[leaves >= next_call]
        if oh and (not following.size or tuple(rows[following[0], :2]) != (oh, ow)):
            out[i] = True
    return out


@functools.lru_cache(maxsize=256)
def _record_cached(apply, h, w, treedef, leaves):
    variables = jax.tree_util.tree_unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaves])
    rows: list = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        x = args[0] if args else None
        slot = len(rows)
        rows.append(None)  # in the order calls start, as masked_apply meets them
        out = next_fun(*args, **kwargs)
        # After the shapes, the index of the first call started after this one ended.
        rows[slot] = (*(x.shape[1:3] if _spatial(x) else (0, 0)), *(out.shape[1:3] if _spatial(out) else (0, 0)), len(rows))
        return out

    def run(v, x):
        with nn.intercept_methods(interceptor):
            return apply(v, x)

    jax.eval_shape(run, variables, jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32))
    return np.asarray(rows, np.int32).reshape(-1, 5)


def _record(apply, h, w, variables) -> np.ndarray:
    """(K, 5) int32: :func:`record_extents`'s columns, then the index of the first call that started
    after the call ended (its own plus one for a leaf, which calls no other module)."""
    leaves, treedef = jax.tree_util.tree_flatten(variables)
    return _record_cached(apply, int(h), int(w), treedef, tuple((tuple(a.shape), np.dtype(a.dtype)) for a in leaves))


def _levels(calls: np.ndarray) -> list[tuple[int, int]]:
    """The distinct image shapes among the calls' inputs and outputs, largest first."""
    shapes = {tuple(int(v) for v in pair) for pair in np.concatenate([calls[:, :2], calls[:, 2:]])} - {(0, 0)}
    return sorted(shapes, reverse=True)


def level_extents(apply, variables, h: int, w: int, canvas: tuple[int, int]) -> np.ndarray:
    """(L, 2) int32: for each image shape the model's layers have on a ``canvas`` (height, width)
    input, largest first, the (height, width) the same layers have on an (h, w) photo alone. Raises
    ``ValueError`` where layers of one shape on the canvas have different shapes on the photo (no
    model here does: checked for every family on many sizes)."""
    on_canvas = record_extents(apply, variables, *canvas)
    alone = record_extents(apply, variables, h, w)
    found: dict = {}
    for cols in ((0, 1), (2, 3)):
        for big, small in zip(on_canvas[:, cols], alone[:, cols]):
            key = (int(big[0]), int(big[1]))
            if key != (0, 0):
                found.setdefault(key, set()).add((int(small[0]), int(small[1])))
    levels = _levels(on_canvas)
    clash = [key for key in levels if len(found[key]) > 1]
    if clash:
        raise ValueError(f"a {w}x{h} photo's layers do not line up with the canvas's at {clash[0]}: it needs a canvas of its own")
    return np.asarray([next(iter(found[key])) for key in levels], np.int32)


def _reads_neighbours(module) -> bool:
    """Whether ``module`` is a convolution with a kernel wider than one pixel (it reads the padding)."""
    kernel = getattr(module, "kernel_size", None)
    return kernel is not None and any(k > 1 for k in np.atleast_1d(kernel))


def _mask(x, hw):
    """(N, H, W, C) ``x`` with everything outside each image's (h, w) = ``hw[n]`` at the top left set to 0."""
    h, w = x.shape[1:3]
    inside = (jnp.arange(h)[None, :, None] < hw[:, 0, None, None]) & (jnp.arange(w)[None, None, :] < hw[:, 1, None, None])
    return inside[..., None].astype(x.dtype)


def masked_apply(apply: Callable[[Any, jnp.ndarray], jnp.ndarray], variables, x: jnp.ndarray, extents: jnp.ndarray, ghost=None) -> jnp.ndarray:
    """``apply(variables, x)`` for (N, H, W, 3) canvases holding each photo at the top left, as if
    each photo were run alone: ``extents`` (N, L, 2) from :func:`level_extents` for each photo's
    size (they may differ per photo). The model must not resize its input itself. ``ghost``: a
    ghost network's skip erosion, passed on to ``apply`` (it changes no layer's shape)."""
    calls = _record(apply, *x.shape[1:3], variables)
    levels = {shape: i for i, shape in enumerate(_levels(calls[:, :4]))}
    masked_outputs = _masked_outputs(calls)
    masks: dict = {}
    last: list = []
    count = [0]  # module calls started so far, in the recorded order

    def mask(a):
        key = a.shape[1:3]
        if key not in masks:  # one mask per layer shape, shared by every layer of that shape
            masks[key] = _mask(a, extents[:, levels[key]])
        return a * masks[key].astype(a.dtype)

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        args = list(args)
        call = count[0]
        count[0] += 1
        if args and _spatial(args[0]) and _reads_neighbours(context.module):
            args[0] = mask(args[0])
        elif args and getattr(args[0], "ndim", None) == 2 and last:
            # The global mean over the canvas, rescaled to the mean over the photo's own extent.
            (hc, wc), hw = last.pop()
            args[0] = args[0] * ((hc * wc) / (hw[:, 0] * hw[:, 1]).astype(args[0].dtype))[:, None]
        out = next_fun(*args, **kwargs)
        if _spatial(out):
            if masked_outputs[call]:
                out = mask(out)
            last[:] = [(out.shape[1:3], extents[:, levels[out.shape[1:3]]])]
        return out

    with nn.intercept_methods(interceptor):
        return apply(variables, x, **ghostly(ghost))
