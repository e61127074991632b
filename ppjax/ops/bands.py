"""Resampling with the weights as arguments: one compiled program for every image size.

:mod:`ppjax.ops.resample` bakes each resize's weights into the program, so every new photo size
compiles anew. Here a resize along one axis is a :class:`BandSet`, arrays of one row per image
(input indices and weights of each output sample, padded with zero weights to a fixed number of
taps, and the transpose the same way), which enter the program as data. A batch of photos of
different sizes, each placed at the top left of one fixed canvas (:mod:`ppjax.ops.canvas`), then
shares one program: every index points inside its own photo, so the canvas padding is never read.

- :func:`view_bands`: Pillow's weights for the attacker's four views (the Places365 demo's 256 and
  centre 224, or straight to 224; bilinear or bicubic) of an axis of ``n`` pixels, exactly as
  :func:`ppjax.ops.resample.resize` and :func:`~ppjax.ops.resample.center_crop` compute them;
- :func:`apply_bands`: the banded map of a batch, with its exact transpose as the gradient (no
  scatter, no dense matrix);
- :func:`resize_view`: a whole view (horizontal pass, 8-bit rounding, vertical pass, rounding);
- :func:`shift_scale_bands`: in-program weights for the input diversity's shrink and shift
  (:func:`ppjax.attacks.transfer.diverse_inputs`), from traced scales and offsets.

Pixels are float32 (N, H, W, C) in [0, 1]; indices are int32, weights float32.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppjax.ops.resample import _transpose, pil_band, round_st

__all__ = ["VIEW_SIDE", "VIEW_PAIRS", "BandSet", "view_bands", "taps_needed", "stack_bands", "apply_bands", "resize_view", "shift_scale_bands"]

#: The side every attacker's view hands its classifier.
VIEW_SIDE = 224
#: The social channel's views, in the order its draws cycle through them: (view, filter).
VIEW_PAIRS = (("demo", "bilinear"), ("demo", "bicubic"), ("direct", "bilinear"), ("direct", "bicubic"))
#: Each view's resize target along an axis and the first row it keeps (the centre crop).
_VIEW_RESIZE = {"demo": (256, 16), "direct": (VIEW_SIDE, 0)}


class BandSet(NamedTuple):
    """Resampling maps along one axis, one per image and view: output ``j`` of view ``v`` of image
    ``i`` is ``sum_k weight[i, v, j, k] * x[index[i, v, j, k]]``; ``t_index``/``t_weight`` hold the
    transpose over the canvas axis; ``rounds[i, v]`` says whether Pillow rounds the pass to 8 bits
    (it skips a pass, rounding included, when the size does not change). Shapes (N, V, 224, T),
    (N, V, S, Tt), (N, V); unused taps have weight 0 and point at sample 0."""

    index: np.ndarray
    weight: np.ndarray
    t_index: np.ndarray
    t_weight: np.ndarray
    rounds: np.ndarray


@functools.lru_cache(maxsize=512)
def _one_view(n: int, view: str, filter: str):
    """(index (224, T0), weight, t_index (n, Tt0), t_weight, rounds) of one view along an axis of ``n``."""
    full, start = _VIEW_RESIZE[view]
    if n == full:  # Pillow returns a copy: no weights, no rounding
        index = np.arange(start, start + VIEW_SIDE, dtype=np.int64)[:, None]
        weight = np.ones((VIEW_SIDE, 1), np.float64)
        rounds = False
    else:
        band = pil_band(n, full, filter)
        index = band.index[start : start + VIEW_SIDE].astype(np.int64)
        weight = band.weight[start : start + VIEW_SIDE].astype(np.float64)
        rounds = True
    t_index, t_weight = _transpose(index, weight, n)
    return index.astype(np.int32), weight.astype(np.float32), t_index, t_weight, rounds


def taps_needed(n: int) -> tuple[int, int]:
    """(forward taps, transposed taps) the four views need along an axis of ``n`` pixels."""
    views = [_one_view(n, v, f) for v, f in VIEW_PAIRS]
    return max(v[0].shape[1] for v in views), max(v[2].shape[1] for v in views)


def view_bands(n: int, side: int, taps: int, t_taps: int) -> BandSet:
    """The four views' maps along an axis of ``n`` pixels placed at the start of a canvas axis of
    ``side`` pixels, padded to ``taps``/``t_taps``; no batch axis (shapes (V, 224, taps), ...).
    ``t_taps`` 0: no transpose (the gradient is then a scatter, see :func:`apply_bands`).
    Raises ``ValueError`` when the views need more taps than that."""
    if not 1 <= n <= side:
        raise ValueError(f"an axis of {n} pixels does not fit a canvas of {side}")
    need, t_need = taps_needed(n)
    if need > taps or (t_taps and t_need > t_taps):
        raise ValueError(f"an axis of {n} pixels needs {need}/{t_need} taps, the canvas has {taps}/{t_taps}")
    v = len(VIEW_PAIRS)
    index = np.zeros((v, VIEW_SIDE, taps), np.int32)
    weight = np.zeros((v, VIEW_SIDE, taps), np.float32)
    t_index = np.zeros((v, side, t_taps), np.int32)
    t_weight = np.zeros((v, side, t_taps), np.float32)
    rounds = np.zeros(v, bool)
    for i, (view, filt) in enumerate(VIEW_PAIRS):
        idx, w, t_idx, t_w, r = _one_view(n, view, filt)
        index[i, :, : idx.shape[1]] = idx
        weight[i, :, : w.shape[1]] = w
        if t_taps:
            t_index[i, :n, : t_idx.shape[1]] = t_idx
            t_weight[i, :n, : t_w.shape[1]] = t_w
        rounds[i] = r
    return BandSet(index, weight, t_index, t_weight, rounds)


def stack_bands(rows: list[BandSet]) -> BandSet:
    """One :class:`BandSet` with a leading image axis from per-image ones."""
    return BandSet(*(np.stack(parts) for parts in zip(*rows)))


def _gather_sum(x, index, weight, axis):
    """``sum_k weight[..., k] * take(x, index[..., k], axis)`` per image: (N, M, K) maps along
    ``axis`` (1 or 2) of (N, H, W, C), a tap per step of a ``lax`` loop. The loop keeps the program
    small, and its operands are materialised: fused into a later gather, XLA:CPU recomputed this
    one once per tap of that one (a view's gradient took 37 ms instead of 10 on a 1088 canvas)."""
    n = x.shape[0]
    shape = list(x.shape)
    shape[axis] = index.shape[1]

    def tap(k, out):
        idx = jax.lax.dynamic_index_in_dim(index, k, axis=2, keepdims=False)
        w = jax.lax.dynamic_index_in_dim(weight, k, axis=2, keepdims=False)
        w = w[:, :, None, None] if axis == 1 else w[:, None, :, None]
        return out + jax.vmap(lambda xi, ii: jnp.take(xi, ii, axis=axis - 1, mode="clip"))(x, idx) * w

    return jax.lax.fori_loop(0, index.shape[-1], tap, jnp.zeros(shape, x.dtype)) if n else jnp.zeros(shape, x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _banded(x, index, weight, t_index, t_weight, axis):
    return _gather_sum(x, index, weight, axis)


def _banded_fwd(x, index, weight, t_index, t_weight, axis):
    return _gather_sum(x, index, weight, axis), (index, weight, t_index, t_weight)


def _banded_bwd(axis, res, g):
    index, weight, t_index, t_weight = res
    zero_int = np.zeros(index.shape, jax.dtypes.float0)
    zero_t_int = np.zeros(t_index.shape, jax.dtypes.float0)
    return _gather_sum(g, t_index, t_weight, axis), zero_int, jnp.zeros_like(weight), zero_t_int, jnp.zeros_like(t_weight)


_banded.defvjp(_banded_fwd, _banded_bwd)


def apply_bands(x: jnp.ndarray, index, weight, t_index, t_weight, axis: int) -> jnp.ndarray:
    """Per-image banded maps along ``axis`` (1: rows, 2: columns) of (N, H, W, C): ``index`` and
    ``weight`` (N, M, K) for the M outputs, ``t_index``/``t_weight`` (N, S, Kt) their transpose over
    the S inputs, which is the gradient. Returns (N, M, W, C) or (N, H, M, C).

    With Kt = 0 the gradient is XLA's scatter-add instead: as fast on canvases up to 512 pixels
    (3-9 ms a pass on 2 cores) and free of any limit on how many outputs one input feeds (a photo
    1 pixel high feeds all 224 rows of a view), but 12 times slower than the transpose at 1088."""
    if t_index.shape[-1] == 0:
        return _gather_sum(x, index, weight, axis)
    return _banded(x, index, weight, t_index, t_weight, axis)


def _pick(bands: BandSet, view) -> tuple:
    """One view's maps of every image: ``view`` is a (traced) index into :data:`VIEW_PAIRS`."""
    take = lambda a: jnp.take(jnp.asarray(a), view, axis=1)  # noqa: E731
    return take(bands.index), take(bands.weight), take(bands.t_index), take(bands.t_weight), take(bands.rounds)


def resize_view(x01: jnp.ndarray, rows: BandSet, cols: BandSet, view) -> jnp.ndarray:
    """(N, S, S', 3) canvases in [0, 1] -> (N, 224, 224, 3): each image's view ``view`` (an index
    into :data:`VIEW_PAIRS`, may be traced) as Pillow computes it on the image alone: the
    horizontal pass first, rounded to 8 bits, then the vertical pass, rounded (straight-through
    gradients), each only where Pillow resizes that axis."""
    y = x01 * 255.0
    for bands, axis in ((cols, 2), (rows, 1)):
        index, weight, t_index, t_weight, rounds = _pick(bands, view)
        y = apply_bands(y, index, weight, t_index, t_weight, axis)
        y = jnp.where(rounds[:, None, None, None], jnp.clip(round_st(y), 0.0, 255.0), y)
    return y / 255.0


#: Taps of :func:`shift_scale_bands`: a shrink to 75% or less spreads each output's triangle over
#: at most three input samples, and each input over at most two outputs.
_SHIFT_TAPS = 4


def shift_scale_bands(n, side: int, scale, shift):
    """The maps of ``jax.image.scale_and_translate`` (linear, antialiased) along an axis of ``n``
    valid pixels (traced (N,)) at the start of a canvas axis of ``side``: output ``i`` samples input
    ``(i + 0.5 - shift) / scale - 0.5`` with a triangle of half-width ``1 / scale``, normalised,
    and is 0 where that point falls outside the image. ``scale`` (N,) in [0.75, 1], ``shift`` (N,)
    pixels. Returns (index, weight, t_index, t_weight), each (N, side, 4)."""
    n = jnp.asarray(n, jnp.float32)[:, None, None]
    s = jnp.asarray(scale, jnp.float32)[:, None, None]
    t = jnp.asarray(shift, jnp.float32)[:, None, None]
    k = jnp.arange(_SHIFT_TAPS, dtype=jnp.float32)
    out = jnp.arange(side, dtype=jnp.float32)[None, :, None]

    def raw(i, j):
        sample = (i + 0.5 - t) / s - 0.5
        return jnp.where((j >= 0) & (j < n), jnp.maximum(0.0, 1.0 - jnp.abs(sample - j) * s), 0.0)

    # Forward: the samples j near output i's sample point.
    sample_i = (out + 0.5 - t) / s - 0.5
    j = jnp.floor(sample_i - 1.0 / s) + 1.0 + k
    w = raw(out, j)
    total = jnp.sum(w, axis=-1, keepdims=True)
    keep = (jnp.abs(total) > 1000.0 * np.finfo(np.float32).eps) & (sample_i >= -0.5) & (sample_i <= n - 0.5)
    norm = jnp.where(keep, 1.0 / jnp.where(total != 0, total, 1.0), 0.0)  # (N, side, 1)
    index = jnp.clip(j, 0, side - 1).astype(jnp.int32)
    weight = w * norm
    # Transpose: the outputs i whose triangle reaches input j (fewer than three; one tap to spare).
    i = jnp.floor(s * (out + 0.5) + t - 1.5 - s) + 1.0 + k
    wt = raw(i, out)
    i_clip = jnp.clip(i, 0, side - 1).astype(jnp.int32)
    t_weight = jnp.where((i >= 0) & (i < side), wt * _norm_at(norm[..., 0], i_clip), 0.0)
    return index, weight, i_clip, t_weight


def _norm_at(norm, idx):
    """``norm[n, idx[n, a, k]]`` for (N, S) ``norm`` and (N, S, K) ``idx``."""
    return jax.vmap(lambda nv, iv: nv[iv])(norm, idx)
