"""Pillow's resize, differentiable: the attacker's and the platform's resizing inside the attack.

A photo reaches a classifier resized (torchvision's ``Resize`` on a PIL image calls Pillow's
antialiased resize; a sharing platform shrinks it first). :func:`resize` computes what
``Image.resize(size, filter)`` computes on an 8-bit RGB image, as a differentiable function:

- the filter weights are Pillow's own (``precompute_coeffs`` in ``libImaging/Resample.c``): each
  output pixel's centre maps to ``(i + 0.5) * in/out`` in the input, the filter (triangle for
  bilinear, Keys' cubic with a = -0.5 for bicubic, Lanczos-3) is stretched by the downscaling
  factor, so every input pixel under the footprint counts (antialiasing), and the weights of each
  output pixel are normalised to sum to 1, then held in Pillow's 22-bit fixed point;
- the horizontal pass runs first and its result is rounded to 8 bits, as Pillow stores it, then
  the vertical pass, rounded again. The roundings pass gradients straight through.

Each pass is a banded linear map: an output pixel reads at most ``2 * ceil(support * scale) + 1``
input pixels. It is applied as that many shifted gathers, and its gradient as the gathers of the
transposed band (each input pixel feeds only a few outputs), so neither direction builds a dense
(out, in) matrix or a scatter: shrinking a 4032x3024 photo costs about 2 * taps multiply-adds per
output value, not in * out.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["FILTERS", "Band", "pil_band", "resize", "center_crop", "round_st"]

_PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed point for 8-bit images


def _triangle(x):
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _cubic(x, a=-0.5):
    x = np.abs(x)
    return np.where(x < 1.0, ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0, np.where(x < 2.0, (((x - 5.0) * x + 8.0) * x - 4.0) * a, 0.0))


def _lanczos(x):
    x = np.asarray(x, np.float64)
    return np.where(np.abs(x) < 3.0, np.sinc(x) * np.sinc(x / 3.0), 0.0)


#: Pillow's filters by name: (kernel, support in input pixels at scale 1).
FILTERS = {"bilinear": (_triangle, 1.0), "bicubic": (_cubic, 2.0), "lanczos": (_lanczos, 3.0)}


class Band(NamedTuple):
    """A banded linear map from ``n_in`` to ``n_out`` samples along one axis: output ``j`` is
    ``sum_k weight[j, k] * x[index[j, k]]``; ``t_index``/``t_weight`` hold its transpose the same
    way (input ``i`` receives ``sum_k t_weight[i, k] * g[t_index[i, k]]``). Unused taps have weight 0."""

    index: np.ndarray
    weight: np.ndarray
    t_index: np.ndarray
    t_weight: np.ndarray


@functools.lru_cache(maxsize=64)
def pil_band(n_in: int, n_out: int, filter: str = "bilinear") -> Band:
    """Pillow's resampling weights from ``n_in`` to ``n_out`` pixels along one axis (the whole
    extent, as ``Image.resize`` without a box), already in its 22-bit fixed point."""
    if filter not in FILTERS:
        raise ValueError(f"resize filter must be one of {', '.join(FILTERS)}, got {filter!r}")
    if n_in < 1 or n_out < 1:
        raise ValueError(f"cannot resize {n_in} pixels to {n_out}")
    kernel, support = FILTERS[filter]
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support *= filterscale
    taps = int(math.ceil(support)) * 2 + 1
    index = np.zeros((n_out, taps), np.int64)
    weight = np.zeros((n_out, taps), np.float64)
    for j in range(n_out):
        center = (j + 0.5) * scale
        # Pillow truncates towards zero with (int) casts; the values here are >= -0.5.
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        xs = np.arange(lo, hi)
        w = kernel((xs - center + 0.5) / filterscale)
        total = w.sum()
        if total != 0.0:
            w = w / total
        index[j, : hi - lo] = xs
        index[j, hi - lo :] = xs[-1] if len(xs) else 0
        weight[j, : hi - lo] = w
    # Pillow's normalize_coeffs_8bpc: round half away from zero to 22 fractional bits.
    fixed = np.trunc(weight * (1 << _PRECISION_BITS) + np.where(weight < 0, -0.5, 0.5))
    weight = fixed / (1 << _PRECISION_BITS)
    return Band(index.astype(np.int32), weight.astype(np.float32), *_transpose(index, weight, n_in))


def _transpose(index, weight, n_in):
    rows, cols = np.nonzero(weight)
    sources = index[rows, cols]
    order = np.argsort(sources, kind="stable")
    sources, outs, ws = sources[order], rows[order], weight[rows, cols][order]
    counts = np.bincount(sources, minlength=n_in)
    taps = max(int(counts.max()), 1)
    t_index = np.zeros((n_in, taps), np.int32)
    t_weight = np.zeros((n_in, taps), np.float32)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(sources)) - starts[sources]
    t_index[sources, slot] = outs
    t_weight[sources, slot] = ws
    return t_index, t_weight


def _gather_sum(x, index, weight, axis):
    """``sum_k weight[:, k] * take(x, index[:, k], axis)``, one tap at a time: no (.., out, K, ..)
    intermediate, which for a 12-megapixel photo would hold K copies of it."""
    shape = [1] * x.ndim
    shape[axis] = index.shape[0]
    out = None
    for k in range(index.shape[1]):
        term = jnp.take(x, jnp.asarray(index[:, k]), axis=axis) * jnp.asarray(weight[:, k]).reshape(shape)
        out = term if out is None else out + term
    return out


def _banded(band: Band, axis: int):
    """The band applied along ``axis``, with its exact transpose as the gradient."""

    @jax.custom_vjp
    def apply(x):
        return _gather_sum(x, band.index, band.weight, axis)

    def forward(x):
        return apply(x), None

    def backward(_, g):
        return (_gather_sum(g, band.t_index, band.t_weight, axis),)

    apply.defvjp(forward, backward)
    return apply


def round_st(v: jnp.ndarray) -> jnp.ndarray:
    """Round half up (``floor(v + 0.5)``, as Pillow's and libjpeg's integer code do) in the forward
    pass, the identity in the backward pass."""
    return v + jax.lax.stop_gradient(jnp.floor(v + 0.5) - v)


def resize(x01: jnp.ndarray, size: tuple[int, int], filter: str = "bilinear", *, quantise: bool = True) -> jnp.ndarray:
    """(N, H, W, C) pixels in [0, 1] resized to ``size`` = (height, width) as Pillow's
    ``Image.resize((width, height), filter)`` does; (N, height, width, C) in [0, 1].

    ``quantise`` rounds each pass to the uint8 lattice as Pillow's 8-bit images do (straight-through
    for gradients); without it the result is the exact real-valued resampling. A size equal to the
    input's is returned unchanged, as Pillow returns a copy.
    """
    n, h, w, c = x01.shape
    out_h, out_w = int(size[0]), int(size[1])
    y = x01 * 255.0
    # Pillow: horizontal pass first (into an 8-bit image), then vertical.
    if out_w != w:
        y = _banded(pil_band(w, out_w, filter), 2)(y)
        y = jnp.clip(round_st(y), 0.0, 255.0) if quantise else y
    if out_h != h:
        y = _banded(pil_band(h, out_h, filter), 1)(y)
        y = jnp.clip(round_st(y), 0.0, 255.0) if quantise else y
    return y / 255.0


def center_crop(x01: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    """torchvision's ``CenterCrop(size)`` of (N, H, W, C): the offsets ``round((H - h) / 2)`` with
    Python's rounding; ``size`` = (height, width), at most the image's."""
    n, h, w, c = x01.shape
    ch, cw = size
    if ch > h or cw > w:
        raise ValueError(f"cannot centre-crop {w}x{h} pixels to {cw}x{ch}")
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return x01[:, top : top + ch, left : left + cw, :]
