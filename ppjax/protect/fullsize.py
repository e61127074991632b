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
from ppjax.ops.metrics import srgb_to_lab
from ppjax.ops.perceptual import REACH, allowance_of_lightness, fit_levels
from ppjax.protect.lattice import lattice_radius, under_floor

__all__ = ["WORK_MAX_SIDE", "EDIT_WORK_MAX_SIDE", "working_copy", "lift", "fit_allowance"]

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


def lift(full: np.ndarray, work: np.ndarray, protected: np.ndarray, eps: float, min_psnr: float | None, perceptual=None) -> np.ndarray:
    """The (H, W, 3) uint8 ``full`` photo plus the change ``protected - work`` (both (h, w, 3)
    uint8 at the working size) upsampled bilinearly, on the lattice within ``eps``/255 and at
    ``min_psnr`` dB or above, and with ``perceptual`` (a :class:`ppjax.attacks.PerceptualBudget`)
    every full-size pixel within its own CIEDE2000 allowance (:func:`fit_allowance`).

    The change is upsampled as an 8-bit image offset by 128 (Pillow rounds each pass): one call on
    all three channels and no full-size float array (0.2 s and 36 MB for 12 megapixels, against
    1.8 s and 0.6 GB in float). Bilinear weights are convex, so each pass stays inside the change's
    own bounds. Only where that rounding breaks the PSNR floor (rare) is the change upsampled in
    float and searched for the largest one that keeps it."""
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
    return out if perceptual is None else fit_allowance(full, out, perceptual)


#: Side of the tiles :func:`fit_allowance` works on, and the halo each needs around it (as far
#: as a pixel's allowance looks).
_FIT_TILE = 512
_FIT_HALO = REACH


def fit_allowance(original: np.ndarray, changed: np.ndarray, perceptual) -> np.ndarray:
    """(H, W, 3) uint8 ``changed`` with every pixel's change from ``original`` made to fit its
    CIEDE2000 allowance under ``perceptual`` (:func:`ppjax.ops.perceptual.fit_levels`), computed on
    the full-size original, in tiles of one compiled program whatever the size. Changes only
    shrink, so the L-infinity ball and the PSNR floor still hold."""
    h, w = original.shape[:2]
    pad = ((_FIT_HALO, _FIT_HALO + _FIT_TILE), (_FIT_HALO, _FIT_HALO + _FIT_TILE), (0, 0))
    x0 = np.pad(original, pad, mode="edge")
    q = np.pad(changed.astype(np.int16) - original, pad)
    side = _FIT_TILE + 2 * _FIT_HALO
    program = _fit_program(perceptual.flat, perceptual.busy)
    out = changed.copy()
    for i in range(0, h, _FIT_TILE):
        for j in range(0, w, _FIT_TILE):
            t0, tq = x0[i : i + side, j : j + side], q[i : i + side, j : j + side]
            if not tq.any():
                continue
            fitted = np.asarray(program(t0, tq))
            rows, cols = min(_FIT_TILE, h - i), min(_FIT_TILE, w - j)
            out[i : i + rows, j : j + cols] = (original[i : i + rows, j : j + cols] + fitted[:rows, :cols]).astype(np.uint8)
    return out


@functools.lru_cache(maxsize=4)
def _fit_program(flat: float, busy: float):
    def fit(x0_255, q):
        x0_255, q = x0_255.astype(jnp.float32), q.astype(jnp.float32)
        lab = srgb_to_lab(x0_255 / 255.0)
        limit = allowance_of_lightness(lab[..., 0], flat, busy)
        inner = slice(_FIT_HALO, _FIT_HALO + _FIT_TILE)
        return fit_levels(q[inner, inner], x0_255[inner, inner], limit, lab[inner, inner]).astype(jnp.int16)

    return jax.jit(fit)


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
