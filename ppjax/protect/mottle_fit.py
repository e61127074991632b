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

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ppjax.ops.mottle import FLARE, LUMINANCE, MASK_CONTRAST, REACH, SIGMA, WINDOW
from ppjax.ops.visibility import gaussian_taps

__all__ = ["luminance", "contrast_map", "contrast_of", "surround", "fit_mottle", "FIT_PASSES", "FIT_SCHEDULE"]

#: The passes of :func:`fit_mottle`, each one low-pass of the change, as (kind, reach in pixels):
#: "thin" keeps 1/r of the changes where the neighbourhood within the reach is r times over (the
#: first does nearly all); "drop" takes the whole change of every pixel within the reach of one
#: still over. The short drops take the few pixels left just over; the last one, at the
#: low-pass's own reach, makes the low-pass zero around any pixel still over, so the cap holds.
#: (It was two thinnings over the low-pass's reach and that last drop, which took the whole
#: neighbourhood of a pixel a hair over: on a dark sky carried back from its working copy, 38% of
#: the changed pixels went where a quarter were over; now 14%. docs/visibility.md.)
FIT_SCHEDULE = (("thin", 2), ("thin", 2), ("thin", 2), ("drop", 1), ("drop", 1), ("drop", 1), ("drop", REACH))
FIT_PASSES = len(FIT_SCHEDULE)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32 relative luminance of (H, W, 3) uint8 sRGB (a table of the 256 levels)."""
    v = np.arange(256, dtype=np.float64) / 255.0
    table = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    r, g, b = (table * weight for weight in LUMINANCE)  # each level's share, weighed once, not per pixel
    return (np.take(r, rgb[..., 0]) + np.take(g, rgb[..., 1]) + np.take(b, rgb[..., 2])).astype(np.float32)


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
        pair = np.empty_like(acc)  # one buffer for every pair of taps: a 4 MP photo's passes allocate no more
        for i in range(r):
            np.add(at(i), at(2 * r - i), out=pair)
            pair *= k[i]
            acc += pair
        out = acc
    return out


def contrast_map(original: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """(H, W) float32: the change's low-passed luminance contrast at each pixel (a fraction)."""
    y0 = luminance(original)
    return contrast_of(y0, surround(y0)[0], changed)


def contrast_of(y0: np.ndarray, base: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """:func:`contrast_map` from the original's :func:`luminance` ``y0`` and :func:`surround`'s
    ``base``, for callers that keep them."""
    return _contrast(y0, base, luminance(changed))


def _contrast(y0: np.ndarray, base: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`contrast_of` from the changed image's luminance ``y``."""
    return np.abs(_low_pass(y - y0)) / base


def _dither(shape, at: tuple[int, int] = (0, 0)) -> np.ndarray:
    """(H, W) thresholds in (0, 1) of an 8x8 ordered (Bayer) dither, tiled over the photo from its
    top left; ``at``: where this (H, W) part of the photo starts. Any 4x4 window holds each
    sixteenth of the thresholds once, so the share kept is even at every place, and a white-noise
    pattern's low-frequency clumps (which would themselves be mottle) are absent."""
    bayer = np.zeros((1, 1))
    for _ in range(3):
        bayer = np.block([[4 * bayer, 4 * bayer + 2], [4 * bayer + 3, 4 * bayer + 1]])
    h, w = shape
    rows, cols = ((np.arange(n) + start) % 8 for n, start in zip((h, w), at))
    return (bayer[rows[:, None], cols[None, :]] + 0.5) / 64.0


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


#: The fit goes tile by tile on photos larger than two tiles (a 12 MP photo's whole-array passes
#: took 6 s on one core and most of a gigabyte): tiles of this side, each read with a margin of
#: :data:`_HALO` pixels, enough for its inner part to come out as from the whole photo. A pixel's
#: first contrast depends on the photo within the surround's two windows (2 x 6 pixels; the
#: low-pass's 5 lie inside them), then each pass's reach and each later pass's low-pass reach 5
#: more: 56 for :data:`FIT_SCHEDULE`.
_TILE = 512
_HALO = max(2 * (WINDOW // 2), REACH) + sum(reach for _, reach in FIT_SCHEDULE) + (FIT_PASSES - 1) * REACH


def fit_mottle(original: np.ndarray, changed: np.ndarray, contrast: float, workers: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 ``changed`` with its change from ``original`` thinned where its low-passed
    luminance contrast (:func:`contrast_map`) is over ``contrast`` times the cap's masking factor
    (1 on smooth areas, the original's own contrast over
    :data:`~ppjax.ops.mottle.MASK_CONTRAST` in texture). Where a pixel's neighbourhood is ``r``
    times over, each of its pixels keeps its whole change with probability 1/``r`` (by an ordered
    dither) and drops it otherwise; after such passes, every pixel next to one still over drops its
    change, and last every pixel within the low-pass's reach of one still over (there the low-pass
    is then zero): :data:`FIT_SCHEDULE`.

    A photo larger than two tiles is fitted in tiles of :data:`_TILE` (the same bytes as the
    whole, up to the window sums' float rounding), on ``workers`` threads (None: one per core;
    NumPy lets go of the interpreter inside each array operation); tiles with no change are skipped."""
    h, w = original.shape[:2]
    if h * w <= 2 * _TILE * _TILE:
        return _fit(original, changed, contrast, (0, 0))
    out = changed.copy()

    def tile(corner):
        i, j = corner
        r0, c0 = max(0, i - _HALO), max(0, j - _HALO)
        r1, c1 = min(h, i + _TILE + _HALO), min(w, j + _TILE + _HALO)
        a, b = original[r0:r1, c0:c1], changed[r0:r1, c0:c1]
        if np.array_equal(a, b):
            return
        fitted = _fit(a, b, contrast, (r0, c0))
        out[i : i + _TILE, j : j + _TILE] = fitted[i - r0 : i - r0 + _TILE, j - c0 : j - c0 + _TILE]

    corners = [(i, j) for i in range(0, h, _TILE) for j in range(0, w, _TILE)]
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        list(pool.map(tile, corners))  # each writes its own part of `out`; list() raises a tile's error
    return out


def _fit(original: np.ndarray, changed: np.ndarray, contrast: float, at: tuple[int, int]) -> np.ndarray:
    """:func:`fit_mottle` on the whole of (H, W, 3) ``original`` and ``changed``, a part of a photo
    that starts at ``at`` (for the dither's phase)."""
    y0 = luminance(original)
    base, texture = surround(y0)
    cap = contrast * np.maximum(1.0, texture / MASK_CONTRAST)
    moved = np.any(changed != original, axis=-1)
    out = changed.copy()
    dither = _dither(moved.shape, at)
    kept = np.ones(moved.shape)  # the share of its neighbourhood's change each pixel's passes keep
    y = luminance(out)  # a pixel given back its original has the original's luminance, exactly
    for kind, reach in FIT_SCHEDULE:
        over = _contrast(y0, base, y) / cap
        if not (over > 1.0).any():
            break
        if kind == "drop":  # what the dither left over: the whole neighbourhood's change goes
            kept = np.where(_spread_min(np.where(over > 1.0, 0.0, 1.0), reach) < 1.0, 0.0, kept)
        else:
            kept *= _spread_min(np.minimum(1.0, 1.0 / np.maximum(over, 1e-12)), reach)
        drop = moved & (dither >= kept)
        np.copyto(out, original, where=drop[..., None])  # in place: a boolean gather and scatter cost twice as much
        np.copyto(y, y0, where=drop)
        moved &= ~drop
    return out
