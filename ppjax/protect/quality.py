"""PSNR, SSIM and CIEDE2000 of a written photo against its original, at any size, with one compiled
program each (a report over an album of many sizes compiles nothing per size).

PSNR is a sum of squares (NumPy). CIEDE2000 is a per-pixel difference: the pixels go through one
program in chunks of a fixed length, the last padded; its mean, 95th percentile and the share of
16x16 blocks changed enough to be seen at a glance say how visible the change is in colour, and
:func:`mottle` how much of it shows as blotches on smooth areas. SSIM's Gaussian window needs a
compiled filter; run on the whole image it would compile once per photo size. Here the image pair is cut into tiles of a
fixed size that overlap by the window's reach, each tile's 'valid' SSIM map covers its own part of
the image's map, and the maps are summed under a mask: the mean is exactly the whole image's, and
one program serves every size (a 12-megapixel photo never holds SSIM's filtered planes at once).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from ppjax.ops import metrics
from ppjax.ops.mottle import MASK_CONTRAST
from ppjax.protect.mottle_fit import contrast_of, luminance, surround

__all__ = [
    "psnr_ssim", "ciede2000_pixels", "colour_difference", "mottle", "visibility_words", "MOTTLE_SEEN", "image_quality", "BLOCK", "GLANCE_DELTA_E",
]  # fmt: skip

#: Side of the SSIM map each tile covers; tiles are this plus the window's reach on both sides.
_TILE = 256
_REACH = 2 * metrics.SSIM_RADIUS
#: Tiles per call of the compiled program (the last call is padded with empty tiles).
_TILES_PER_CALL = 8
#: Pixels per call of the CIEDE2000 program (512x512).
_PIXELS_PER_CALL = 1 << 18


@jax.jit
def _tile_sums(a, b, rows, cols):
    """Per tile of (T, 266, 266, 3) uint8 pairs: the sum of its SSIM map over its first ``rows``
    rows and ``cols`` columns ((T,) each: the part of the image's map it covers). As planes
    (T, 3, 266, 266), which a CPU filters twice as fast as with the channels innermost."""
    planes = lambda t: jnp.transpose(t.astype(jnp.float32) / 255.0, (0, 3, 1, 2))  # noqa: E731
    m = metrics.ssim_map(planes(a), planes(b), axes=(-2, -1))  # (T, 3, 256, 256)
    inside = (jnp.arange(_TILE)[None, :, None] < rows[:, None, None]) & (jnp.arange(_TILE)[None, None, :] < cols[:, None, None])
    return jnp.sum(jnp.where(inside[:, None], m, 0.0), axis=(1, 2, 3))


def _ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    h, w = a.shape[:2]
    if not metrics.ssim_defined(a.shape):
        return None
    mh, mw = h - _REACH, w - _REACH  # the 'valid' map's size
    th, tw = -(-mh // _TILE), -(-mw // _TILE)
    pad = ((0, th * _TILE + _REACH - h), (0, tw * _TILE + _REACH - w), (0, 0))
    pa, pb = np.pad(a, pad), np.pad(b, pad)
    spans = [(i, j) for i in range(th) for j in range(tw)]
    total = 0.0
    side = _TILE + _REACH
    for start in range(0, len(spans), _TILES_PER_CALL):
        part = spans[start : start + _TILES_PER_CALL]
        ta = np.zeros((_TILES_PER_CALL, side, side, 3), np.uint8)
        tb = np.zeros_like(ta)
        rows = np.zeros(_TILES_PER_CALL, np.int32)
        cols = np.zeros(_TILES_PER_CALL, np.int32)
        for k, (i, j) in enumerate(part):
            ta[k] = pa[i * _TILE : i * _TILE + side, j * _TILE : j * _TILE + side]
            tb[k] = pb[i * _TILE : i * _TILE + side, j * _TILE : j * _TILE + side]
            rows[k], cols[k] = min(_TILE, mh - i * _TILE), min(_TILE, mw - j * _TILE)
        total += float(np.sum(np.asarray(_tile_sums(ta, tb, rows, cols), np.float64)))
    return total / (mh * mw * a.shape[2])


def psnr_ssim(a: np.ndarray, b: np.ndarray) -> tuple[float, float | None]:
    """PSNR (dB; inf when equal) and mean SSIM (None under 11x11 pixels) of two (H, W, 3) uint8 images."""
    d = (a.astype(np.int64) - b.astype(np.int64)).ravel()
    mse = float(np.dot(d, d)) / d.size / 255.0**2  # integers: exact, and 5 times faster than float64
    psnr = float(10.0 * np.log10(1.0 / mse)) if mse > 0 else float("inf")
    return psnr, _ssim(a, b)


#: Side of the square blocks over which the share of the change "seen at a glance" is counted, and
#: the mean CIEDE2000 above which a block counts: a colour difference of about 2 is noticed at a
#: glance side by side (2.3 is the usual just-noticeable difference).
BLOCK = 16
GLANCE_DELTA_E = 2.0


@jax.jit
def _ciede2000_chunk(a, b):
    """CIEDE2000 of (P, 3) uint8 pixel pairs, (P,)."""
    return metrics.ciede2000_map(a.astype(jnp.float32) / 255.0, b.astype(jnp.float32) / 255.0)


def ciede2000_pixels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W) float32: the CIEDE2000 of every pixel of two (H, W, 3) uint8 sRGB images, as
    :func:`ppjax.ops.metrics.ciede2000` on them divided by 255, with one program for every size."""
    pa, pb = a.reshape(-1, 3), b.reshape(-1, 3)
    out = np.empty(len(pa), np.float32)
    for start in range(0, len(pa), _PIXELS_PER_CALL):
        n = min(_PIXELS_PER_CALL, len(pa) - start)
        ca = np.zeros((_PIXELS_PER_CALL, 3), np.uint8)
        cb = np.zeros_like(ca)
        ca[:n], cb[:n] = pa[start : start + n], pb[start : start + n]
        out[start : start + n] = np.asarray(_ciede2000_chunk(ca, cb))[:n]
    return out.reshape(a.shape[:2])


def _block_sums(plane: np.ndarray) -> np.ndarray:
    """(rows, cols) float64 sums of an (H, W) plane over :data:`BLOCK` x :data:`BLOCK` blocks, the
    last row and column of blocks as large as the plane leaves them (zeros beyond it)."""
    h, w = plane.shape
    rows, cols = -(-h // BLOCK), -(-w // BLOCK)
    padded = np.zeros((rows * BLOCK, cols * BLOCK), np.float64)
    padded[:h, :w] = plane
    return padded.reshape(rows, BLOCK, cols, BLOCK).sum(axis=(1, 3))


def colour_difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """How visible the change from ``a`` to ``b`` ((H, W, 3) uint8 sRGB) is: in colour, the mean
    CIEDE2000 (``ciede2000``), its 95th percentile over pixels (``ciede2000_p95``), and the share of
    :data:`BLOCK` x :data:`BLOCK` blocks (the last row and column of blocks as large as the photo
    leaves them) whose mean CIEDE2000 is above :data:`GLANCE_DELTA_E` (``blocks_seen``, 0..1); and as
    mottle on smooth areas, which a per-pixel difference misses (:func:`mottle`'s figures)."""
    d = ciede2000_pixels(a, b)
    if d.size == 0:
        return {"ciede2000": 0.0, "ciede2000_p95": 0.0, "blocks_seen": 0.0, "mottle_p95": 0.0, "blocks_mottled": 0.0, "smooth": 0.0}
    sums, counts = _block_sums(d), _block_sums(np.ones_like(d))
    return {
        "ciede2000": float(np.mean(d, dtype=np.float64)),
        "ciede2000_p95": float(np.percentile(d, 95)),
        "blocks_seen": float(np.mean(sums / counts > GLANCE_DELTA_E)),
        **mottle(a, b),
    }


#: The low-frequency contrast (a fraction) a 16x16 block of a smooth area may carry on average
#: before its mottle counts as seen. Looked at, 1:1 (docs/visibility.md): a dark sky's blotches at a
#: 95th percentile of 2.6% showed faintly, at 4.5% plainly.
MOTTLE_SEEN = 0.02


def mottle(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """How much low-frequency luminance contrast the change from ``a`` to ``b`` ((H, W, 3) uint8
    sRGB) carries where the photo is smooth, at 1:1 (:mod:`ppjax.protect.mottle_fit`).
    ``mottle_p95``: its 95th percentile over the smooth pixels (the original's own contrast under
    :data:`ppjax.ops.mottle.MASK_CONTRAST`), a fraction; ``blocks_mottled``: the share of 16x16
    blocks, smooth in the majority, whose mean is over :data:`MOTTLE_SEEN`; ``smooth``: the share
    of pixels that are smooth. Zeros when nothing is."""
    y0 = luminance(a)
    base, texture = surround(y0)
    contrast = contrast_of(y0, base, b)
    smooth = texture < MASK_CONTRAST
    if not smooth.any():
        return {"mottle_p95": 0.0, "blocks_mottled": 0.0, "smooth": 0.0}
    inside = _block_sums(np.ones(smooth.shape))
    smooth_blocks = _block_sums(smooth) > 0.5 * inside
    means = _block_sums(contrast) / inside
    return {
        "mottle_p95": float(np.percentile(contrast[smooth], 95)),
        "blocks_mottled": float(np.mean(means[smooth_blocks] > MOTTLE_SEEN)) if smooth_blocks.any() else 0.0,
        "smooth": float(np.mean(smooth)),
    }


def visibility_words(ciede2000_p95: float, blocks_seen: float, blocks_mottled: float = 0.0) -> str:
    """The change in words, from :func:`colour_difference`'s figures: "not visible side by side"
    (95th percentile at most 2.5 and at most 5% of blocks over the glance threshold, and at most 5%
    of smooth blocks mottled: the bounds ppjax's visibility goals name), "visible on close look"
    (95th percentile at most 5 and at most 25% of blocks of either kind), else "visible".
    Thresholds set by these goals and by looking (docs/visibility.md), not by a study of viewers."""
    if ciede2000_p95 <= 2.5 and blocks_seen <= 0.05 and blocks_mottled <= 0.05:
        return "not visible side by side"
    if ciede2000_p95 <= 5.0 and blocks_seen <= 0.25 and blocks_mottled <= 0.25:
        return "visible on close look"
    return "visible"


def image_quality(a: np.ndarray, b: np.ndarray) -> dict[str, float | None]:
    """PSNR (dB; inf when equal), SSIM (None under 11x11), the largest change (in 1/255) and
    :func:`colour_difference`'s figures of two (H, W, 3) uint8 images."""
    psnr, ssim = psnr_ssim(a, b)
    linf = int(np.max(np.abs(a.astype(np.int16) - b.astype(np.int16)))) if a.size else 0
    return {"psnr": psnr, "ssim": ssim, **colour_difference(a, b), "linf_255": float(linf)}
