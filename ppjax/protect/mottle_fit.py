"""Mottle on the bytes written, at the photo's own size: measured, and fitted under a cap.

The model is :mod:`ppjax.ops.mottle`'s (the change in relative luminance, low-passed, over the local
luminance plus a screen's flare), here on the host in NumPy for (H, W, 3) uint8 photos of any size,
at 1:1: the attack holds its cap on the working copy, but a full-size photo's change is that copy's
carried back and rounded, and a small photo's is rounded to whole levels; what a person looks at is
these bytes. :func:`fit_mottle` thins the change where its low-passed contrast is over the cap:
each pixel's change is kept whole or dropped, so every pixel's own bound (the L-infinity ball,
its CIEDE2000 allowance) still holds and PSNR only rises, and the share kept is the share the local
cap asks for (an ordered dither, so the same photo gives the same bytes).
"""

from __future__ import annotations

import numpy as np

from ppjax.ops.mottle import FLARE, LUMINANCE, MASK_CONTRAST, SIGMA, WINDOW
from ppjax.ops.visibility import gaussian_taps

__all__ = ["luminance", "contrast_map", "contrast_of", "surround", "fit_mottle", "FIT_PASSES"]

#: Passes of :func:`fit_mottle` (each one low-pass of the change; the first does nearly all, the
#: last takes the whole change of any neighbourhood still over).
FIT_PASSES = 3


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32 relative luminance of (H, W, 3) uint8 sRGB (a table of the 256 levels)."""
    v = np.arange(256, dtype=np.float64) / 255.0
    table = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    lum = np.asarray(LUMINANCE)
    return (table[rgb[..., 0]] * lum[0] + table[rgb[..., 1]] * lum[1] + table[rgb[..., 2]] * lum[2]).astype(np.float32)


def _window_mean(a: np.ndarray) -> np.ndarray:
    """Mean over each pixel's WINDOW square, edges repeated (cumulative sums: any size, one pass)."""
    r = WINDOW // 2
    p = np.pad(a.astype(np.float64), r, mode="edge")
    c = np.zeros((p.shape[0] + 1, p.shape[1]))
    np.cumsum(p, axis=0, out=c[1:])
    p = c[WINDOW:] - c[:-WINDOW]
    c = np.zeros((p.shape[0], p.shape[1] + 1))
    np.cumsum(p, axis=1, out=c[:, 1:])
    return (c[:, WINDOW:] - c[:, :-WINDOW]) / (WINDOW * WINDOW)


def surround(y0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(base, texture) of the original's luminance ``y0`` (H, W): the local luminance plus
    :data:`~ppjax.ops.mottle.FLARE`, and the original's own RMS contrast over it."""
    mean = _window_mean(y0)
    spread = np.sqrt(np.maximum(_window_mean((y0 - mean) ** 2), 0.0))
    base = mean + FLARE
    return base.astype(np.float32), (spread / base).astype(np.float32)


def _low_pass(a: np.ndarray) -> np.ndarray:
    """(H, W) float32 Gaussian of :data:`~ppjax.ops.mottle.SIGMA`, zero beyond the edges (the
    kernel is symmetric: each pair of taps is added before it is weighed)."""
    k = gaussian_taps(SIGMA)
    r = len(k) // 2
    out = a.astype(np.float32)
    for axis in (0, 1):
        n = out.shape[axis]
        p = np.pad(out, [(r, r), (0, 0)] if axis == 0 else [(0, 0), (r, r)])
        at = (lambda i: p[i : i + n]) if axis == 0 else (lambda i: p[:, i : i + n])  # noqa: E731
        acc = k[r] * at(r)
        for i in range(r):
            acc += k[i] * (at(i) + at(2 * r - i))
        out = acc
    return out


def contrast_map(original: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """(H, W) float32: the change's low-passed luminance contrast at each pixel (a fraction)."""
    y0 = luminance(original)
    return contrast_of(y0, surround(y0)[0], changed)


def contrast_of(y0: np.ndarray, base: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """:func:`contrast_map` from the original's :func:`luminance` ``y0`` and :func:`surround`'s
    ``base``, for callers that keep them."""
    return np.abs(_low_pass(luminance(changed) - y0)) / base


def _dither(shape) -> np.ndarray:
    """(H, W) thresholds in (0, 1) of an 8x8 ordered (Bayer) dither, tiled: which pixels of a
    neighbourhood keep their change. Any 4x4 window holds each sixteenth of the thresholds once, so
    the share kept is even at every place, and a white-noise pattern's low-frequency clumps (which
    would themselves be mottle) are absent."""
    bayer = np.zeros((1, 1))
    for _ in range(3):
        bayer = np.block([[4 * bayer, 4 * bayer + 2], [4 * bayer + 3, 4 * bayer + 1]])
    h, w = shape
    tiled = np.tile(bayer, (-(-h // 8), -(-w // 8)))[:h, :w]
    return (tiled + 0.5) / 64.0


def _spread_min(a: np.ndarray, r: int) -> np.ndarray:
    """Each pixel's minimum over the square of half side ``r`` around it (windows doubled in
    length, then two overlapping ones: a few minima an axis, not 2 ``r`` + 1)."""
    side = 2 * r + 1
    out = a
    for axis in (0, 1):
        n = out.shape[axis]
        p = np.pad(out, [(r, r), (0, 0)] if axis == 0 else [(0, 0), (r, r)], mode="edge")
        cut = (lambda m, i, k: m[i : i + k]) if axis == 0 else (lambda m, i, k: m[:, i : i + k])  # noqa: E731
        windows, width = p, 1  # windows[i]: the minimum over width values from i
        while 2 * width <= side:
            m = windows.shape[axis] - width
            windows, width = np.minimum(cut(windows, 0, m), cut(windows, width, m)), 2 * width
        out = np.minimum(cut(windows, 0, n), cut(windows, side - width, n))
    return out


def fit_mottle(original: np.ndarray, changed: np.ndarray, contrast: float) -> np.ndarray:
    """(H, W, 3) uint8 ``changed`` with its change from ``original`` thinned where its low-passed
    luminance contrast (:func:`contrast_map`) is over ``contrast`` times the cap's masking factor
    (1 on smooth areas, the original's own contrast over
    :data:`~ppjax.ops.mottle.MASK_CONTRAST` in texture). Where a pixel's neighbourhood is ``r``
    times over, each of its pixels keeps its whole change with probability 1/``r`` (by an ordered
    dither) and drops it otherwise; after :data:`FIT_PASSES` - 1 such passes, every pixel within
    the low-pass's reach of one still over drops its change (there the low-pass is then zero)."""
    y0 = luminance(original)
    base, texture = surround(y0)
    cap = contrast * np.maximum(1.0, texture / MASK_CONTRAST)
    moved = np.any(changed != original, axis=-1)
    out = changed.copy()
    dither = _dither(moved.shape)
    reach = len(gaussian_taps(SIGMA)) // 2
    kept = np.ones(moved.shape)  # the share of its neighbourhood's change each pixel's passes keep
    for last in [False] * (FIT_PASSES - 1) + [True]:
        over = contrast_of(y0, base, out) / cap
        if not (over > 1.0).any():
            break
        if last:  # what the dither left over: the whole neighbourhood's change goes, so the cap holds there
            kept = np.where(_spread_min(np.where(over > 1.0, 0.0, 1.0), reach) < 1.0, 0.0, kept)
        else:
            kept *= _spread_min(np.minimum(1.0, 1.0 / np.maximum(over, 1e-12)), reach)
        drop = moved & (dither >= kept)
        out[drop] = original[drop]
        moved &= ~drop
    return out
