"""The guided filter (He, Sun and Tang, ECCV 2010), self-guided on one channel: an edge-preserving
smoothing that splits an image into a base and its detail, with a radius given per image.

Box means come from integral images with each window clipped to the image's own extent, so a photo
placed at the top left of a larger canvas (:mod:`ppjax.ops.canvas`) is filtered as if alone, and
the radius may be a traced value (one compiled program for every photo on a canvas).
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["box_mean", "guided_coefficients", "guided_filter", "radius_for"]


def radius_for(fraction, h, w):
    """The window radius (pixels, at least 1) for a photo of (h, w) pixels: ``fraction`` of its
    short side, so that the same fraction gives the same look at every resolution."""
    return jnp.maximum(1, jnp.round(fraction * jnp.minimum(h, w))).astype(jnp.int32)


def _window_sums(s, n, r, axis, xp=jnp):
    """Sums over windows [i - r, i + r] clipped to [0, n - 1] along ``axis`` of an array whose
    integral (cumulative sum with a leading zero) is ``s``; the windows' lengths too."""
    i = xp.arange(s.shape[axis] - 1)
    lo = xp.clip(i - r, 0, xp.maximum(n - 1, 0))
    hi = xp.clip(i + r, 0, xp.maximum(n - 1, 0)) + 1
    return xp.take(s, hi, axis=axis) - xp.take(s, lo, axis=axis), (hi - lo).astype(s.dtype)


def box_mean(x, r, h=None, w=None, xp=jnp):
    """(H, W) mean of ``x`` over the (2r + 1)-square window around each pixel, the window clipped to
    the top-left (h, w) extent (default: the whole array). Pixels outside the extent get values that
    are never meant to be read. ``xp``: jax.numpy, or NumPy on the host (no program per size)."""
    H, W = x.shape
    h = H if h is None else h
    w = W if w is None else w
    pad = lambda a, axis: xp.concatenate([xp.zeros_like(xp.take(a, xp.asarray([0]), axis=axis)), xp.cumsum(a, axis=axis)], axis=axis)  # noqa: E731
    rows, nr = _window_sums(pad(x, 0), h, r, 0, xp)
    both, nc = _window_sums(pad(rows, 1), w, r, 1, xp)
    return both / (nr[:, None] * nc[None, :])


def guided_coefficients(guide, r, eps: float, h=None, w=None, xp=jnp) -> tuple:
    """The self-guided filter's smoothed linear coefficients (mean_a, mean_b), each (H, W), such that
    the filtered image is ``mean_a * guide + mean_b``. ``eps`` is the variance (in squared pixel
    units of ``guide``) below which detail is smoothed away. ``xp`` as for :func:`box_mean`."""
    mean = box_mean(guide, r, h, w, xp)
    var = xp.maximum(box_mean(guide * guide, r, h, w, xp) - mean * mean, 0.0)
    a = var / (var + eps)
    b = (1.0 - a) * mean
    return box_mean(a, r, h, w, xp), box_mean(b, r, h, w, xp)


def guided_filter(guide: jnp.ndarray, r, eps: float, h=None, w=None) -> jnp.ndarray:
    """The self-guided filter of an (H, W) channel: its edge-preserving base."""
    a, b = guided_coefficients(guide, r, eps, h, w)
    return a * guide + b
