"""Photos larger than the working size: the copy the attack works on, and the change carried back.

Under the social channel a photo with a long side over :data:`WORK_MAX_SIDE` is attacked on a copy
shrunk to it (the classifiers only ever see it shrunk further). The change found there is carried
back to every full-resolution pixel by bilinear upsampling (Pillow's), which never leaves the budget (its weights are non-negative and sum to one), then rounded to the lattice at
full size, above the PSNR floor. All of it on the host, so no program is compiled per photo size.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from ppjax.attacks.projections import psnr_radius
from ppjax.ops.channel import platform_size
from ppjax.ops.metrics import delta_e_2000, srgb_to_lab
from ppjax.ops.perceptual import REACH, allowance_of_lightness, fit_levels
from ppjax.protect.lattice import lattice_radius, under_floor

__all__ = ["WORK_MAX_SIDE", "EDIT_WORK_MAX_SIDE", "working_copy", "lift", "fit_allowance", "measure_tile", "fit_pixels"]

#: Under the social channel, photos with a longer side are attacked on a copy shrunk to this many
#: pixels: the platform's smallest size, and 4.5 times the attacker's 224, so nothing the
#: classifiers can see is lost, while a 12-megapixel photo costs an attack step on 0.9 megapixels.
WORK_MAX_SIDE = 1080
#: The same for the edit methods (not the hybrid, whose pixel noise is carried over like the pixel
#: methods'): an edit is a few numbers with the same meaning at every size, found on this copy and
#: applied to the original itself, and the classifiers see 224 pixels; a 1080 copy made the search
#: at 12 MP 5.8 times as long as at 256x256.
EDIT_WORK_MAX_SIDE = 512


def working_copy(rgb: np.ndarray, max_side: int = WORK_MAX_SIDE) -> np.ndarray:
    """The (h, w, 3) uint8 copy of an (H, W, 3) photo the attack works on: the photo itself, or
    shrunk (Pillow bicubic) to a long side of ``max_side``."""
    work = platform_size(*rgb.shape[:2], max_side)
    if work is None:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((work[1], work[0]), Image.Resampling.BICUBIC))


def lift(full: np.ndarray, work: np.ndarray, protected: np.ndarray, eps: float, min_psnr: float | None, perceptual=None, programs=None) -> np.ndarray:
    """The (H, W, 3) uint8 ``full`` photo plus the change ``protected - work`` (both (h, w, 3)
    uint8 at the working size) upsampled bilinearly, on the lattice within ``eps``/255 and at
    ``min_psnr`` dB or above, and with ``perceptual`` (a :class:`ppjax.attacks.PerceptualBudget`)
    every full-size pixel within its own CIEDE2000 allowance (:func:`fit_allowance`).

    The change is upsampled as an 8-bit image offset by 128 (Pillow rounds each pass): one call on
    all three channels and no full-size float array (0.2 s and 36 MB for 12 megapixels, against
    1.8 s and 0.6 GB in float). Bilinear weights are convex, so each pass stays inside the change's
    own bounds. Only where that rounding breaks the PSNR floor (rare) is the change upsampled in
    float and searched for the largest one that keeps it. ``programs``: as for :func:`fit_allowance`."""
    h, w = full.shape[:2]
    r = int(lattice_radius(eps))
    change = protected.astype(np.int16) - work.astype(np.int16)
    if r <= 127:
        shifted = Image.fromarray((change + 128).astype(np.uint8), "RGB")
        q = np.asarray(shifted.resize((w, h), Image.Resampling.BILINEAR)).astype(np.int16) - 128
    else:
        q = np.rint(_float_upsample(change, h, w)).astype(np.int16)
    np.clip(q, -r, r, out=q)
    if min_psnr:
        limit = psnr_radius(min_psnr, q.size) * 255.0
        if float(np.sum(q.astype(np.float64) ** 2)) > limit * limit * (1.0 - 1e-6):
            d = np.clip(_float_upsample(change, h, w), -r, r)
            q = _kept_above_floor(d, np.rint(d), min_psnr).astype(np.int16)
    q += full
    out = np.clip(q, 0, 255).astype(np.uint8)
    return out if perceptual is None else fit_allowance(full, out, perceptual, programs)


#: Side of the tiles :func:`fit_allowance` measures in, and the halo each needs around it (as far
#: as a pixel's allowance looks).
_FIT_TILE = 512
_FIT_HALO = REACH
#: The fewest pixels one call of the fitting program takes (more are padded to a power of two, so
#: that few programs are compiled whatever the photo), and the most: more go in several calls, so
#: that a 12 MP photo with a fifth of its pixels over does not fit 4 Mi pixels at once (one such
#: call peaked at 5.6-6.2 GB, twice the ball alone's, while the passes took every pixel at once;
#: :func:`ppjax.ops.perceptual.fit_levels` now takes them in chunks, but still measures and copies
#: every pixel of its call at once).
_FIT_BUCKET, _FIT_CHUNK = 1 << 12, 1 << 18


def fit_allowance(original: np.ndarray, changed: np.ndarray, perceptual, programs=None) -> np.ndarray:
    """(H, W, 3) uint8 ``changed`` with every pixel's change from ``original`` made to fit its
    CIEDE2000 allowance under ``perceptual`` (:func:`ppjax.ops.perceptual.fit_levels`), computed on
    the full-size original. Changes only shrink, so the L-infinity ball and the PSNR floor still hold.

    Measured in tiles of one compiled program whatever the size; then only the pixels over their
    allowance (about 2% of a protected photo's, up to a fifth of a smooth one's) go through the
    fitting passes, gathered into flat calls of at most :data:`_FIT_CHUNK` pixels. The fit is per
    pixel, so the bytes are those of fitting each tile whole, at about a quarter of the time (each
    pass is a full exact CIEDE2000). ``programs``: (measure, fit), the
    jitted :func:`measure_tile` (``flat`` and ``busy`` bound) and :func:`fit_pixels` as the caller
    keeps them (a protector's are stored traced, which spares a new process its first call's
    tracing); None: this process's own."""
    h, w = original.shape[:2]
    pad = ((_FIT_HALO, _FIT_HALO + _FIT_TILE), (_FIT_HALO, _FIT_HALO + _FIT_TILE), (0, 0))
    x0 = np.pad(original, pad, mode="edge")
    q = np.pad(changed.astype(np.int16) - original, pad)
    side = _FIT_TILE + 2 * _FIT_HALO
    measure, fit = programs if programs is not None else (_measure_program(perceptual.flat, perceptual.busy), _fit_program())
    at, limits = [], []
    for i in range(0, h, _FIT_TILE):
        for j in range(0, w, _FIT_TILE):
            tq = q[i : i + side, j : j + side]
            if not tq.any():
                continue
            over, limit = (np.asarray(a) for a in measure(x0[i : i + side, j : j + side], tq))
            rows, cols = np.nonzero(over[: min(_FIT_TILE, h - i), : min(_FIT_TILE, w - j)])
            at.append((rows + i, cols + j))
            limits.append(limit[rows, cols])
    if not at:
        return changed.copy()
    rows, cols = (np.concatenate(a) for a in zip(*at))
    if not rows.size:
        return changed.copy()
    base = original[rows, cols]
    change, limit = changed[rows, cols].astype(np.int16) - base, np.concatenate(limits)
    out = changed.copy()
    for start in range(0, rows.size, _FIT_CHUNK):
        at = slice(start, start + _FIT_CHUNK)
        n = base[at].shape[0]
        size = max(_FIT_BUCKET, 1 << (n - 1).bit_length())
        flat = lambda a, fill: np.concatenate([a, np.full((size - n, *a.shape[1:]), fill, a.dtype)])  # noqa: E731
        fitted = fit(jnp.asarray(flat(base[at], 0)), jnp.asarray(flat(change[at], 0)), jnp.asarray(flat(limit[at], 1.0)))
        out[rows[at], cols[at]] = (base[at] + np.asarray(fitted)[:n]).astype(np.uint8)
    return out


def measure_tile(x0_255, q, flat: float, busy: float):
    """(tile uint8 with halo, change int16) -> ((T, T) over its allowance, (T, T) allowance)."""
    x0_255, q = x0_255.astype(jnp.float32), q.astype(jnp.float32)
    lab = srgb_to_lab(x0_255 / 255.0)
    limit = allowance_of_lightness(lab[..., 0], flat, busy)
    inner = slice(_FIT_HALO, _FIT_HALO + _FIT_TILE)
    size = delta_e_2000(lab[inner, inner], srgb_to_lab((x0_255[inner, inner] + q[inner, inner]) / 255.0))
    return size > limit, limit


def fit_pixels(x0_255, q, limit):
    """:func:`fit_levels` on (M, 3) pixels: originals uint8, changes int16, allowances (M,)."""
    return fit_levels(q.astype(jnp.float32), x0_255.astype(jnp.float32), limit).astype(jnp.int16)


@functools.lru_cache(maxsize=4)
def _measure_program(flat: float, busy: float):
    return jax.jit(functools.partial(measure_tile, flat=flat, busy=busy))


@functools.lru_cache(maxsize=1)
def _fit_program():
    return jax.jit(fit_pixels)


def _float_upsample(change: np.ndarray, h: int, w: int) -> np.ndarray:
    """(h, w, 3) float32 bilinear upsampling of a working-size change, without rounding."""
    planes = [Image.fromarray(change[..., c].astype(np.float32), "F").resize((w, h), Image.Resampling.BILINEAR) for c in range(3)]
    return np.stack([np.asarray(p) for p in planes], axis=-1)


def _kept_above_floor(d: np.ndarray, q: np.ndarray, min_psnr: float) -> np.ndarray:
    """:func:`ppjax.protect.lattice.under_floor` for one full-size change (rare: only where
    plain rounding breaks the floor), on a flat array padded to a power of two, so that the
    programs compiled are few whatever the sizes."""
    n = d.size
    size = 1 << max(16, (n - 1).bit_length())
    pad = lambda a: np.concatenate([a.reshape(1, -1), np.zeros((1, size - n), np.float32)], axis=1)  # noqa: E731
    out = _floor_program(float(min_psnr))(jnp.asarray(pad(d)), jnp.asarray(pad(q)), jnp.float32(n))
    return np.asarray(out)[0, :n].reshape(d.shape)


@functools.lru_cache(maxsize=8)
def _floor_program(min_psnr: float):
    return jax.jit(lambda d, q, values: under_floor(d, q, min_psnr, values[None]))
