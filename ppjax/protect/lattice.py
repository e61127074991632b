"""Rounding a change to bytes: the uint8 lattice inside the L-infinity budget, above a PSNR floor
and, with a perceptual budget, within each pixel's CIEDE2000 allowance.

The attack works in float; what is written is whole levels ``k / 255``. :func:`quantise` rounds
without leaving the budget or [0, 1], and where plain rounding would break the PSNR floor it finds
the whole-number change nearest the float one that keeps it (two per-image bisections, run only
when some image needs them). Pixel values are float32 (N, H, W, 3) in [0, 1]; eps in 1/255.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ppjax.attacks.projections import pixel_values, psnr_radius, region
from ppjax.ops.perceptual import fit_levels

__all__ = ["lattice_radius", "quantise", "quantise255", "under_floor"]


def lattice_radius(eps: float) -> float:
    """The largest whole number of 1/255 steps inside a budget of ``eps``/255."""
    return float(np.floor(eps + 1e-6))


def quantise(x01: jnp.ndarray, x0_01: jnp.ndarray, eps: float, min_psnr: float | None = None, valid=None, perceptual=None) -> jnp.ndarray:
    """``x01`` rounded to the uint8 lattice (``k / 255``) without leaving the L-infinity budget
    ``eps``/255 around the original ``x0_01`` (itself on the lattice) or [0, 1], and, with
    ``min_psnr`` (dB), without the PSNR of the rounded image falling below it. ``valid`` (N, 2):
    each image's extent on a canvas; the change is zero outside it, and the floor counts its pixels.
    ``perceptual`` (a :class:`ppjax.attacks.PerceptualBudget`): each pixel's exact CIEDE2000 kept
    within its allowance as well (:func:`ppjax.ops.perceptual.fit_levels`)."""
    return quantise255(x01, jnp.rint(x0_01 * 255.0), eps, min_psnr, valid, perceptual) / 255.0


#: Halvings in each search of :func:`under_floor`.
_HALVINGS = 20
#: Spread of the fixed per-value offsets that break ties between equal remainders, so that the
#: search can round up a share of a group of equal changes (sign steps make many) instead of all
#: or none of it.
_TIE_SPREAD = 1e-3


def quantise255(x01, x0_255, eps, min_psnr=None, valid=None, perceptual=None, context=None):
    """:func:`quantise` with the original ``x0_255`` and the result in levels (0-255, whole).
    ``context``: the original's :func:`ppjax.attacks.budget_context` under ``perceptual``, when the
    caller has it (its allowances and CIELAB, not computed again)."""
    r = lattice_radius(eps)
    d = jnp.clip(x01 * 255.0 - x0_255, -r, r)
    mask = region(valid, d.shape)
    d = d if mask is None else d * mask
    q = jnp.rint(d)
    if min_psnr:
        q = under_floor(d, q, min_psnr, pixel_values(valid, d.shape))
    if perceptual is not None:  # last: it only shrinks changes, so the floor and the ball still hold
        if context is None:
            q = fit_levels(q, x0_255, perceptual.limit(x0_255 / 255.0))
        else:
            q = fit_levels(q, x0_255, context.limit, context.lab)
    # The original is on the lattice, so rounding x0 + d and adding a rounded d are the same.
    return jnp.clip(x0_255 + q, 0.0, 255.0)


def under_floor(d, rounded, min_psnr, values):
    """Per image, the whole-number change ``rounded`` (``rint(d)``, 1/255 units) where it keeps the
    PSNR floor; elsewhere the change nearest ``d`` in energy that keeps it: each value's magnitude
    is ``floor(|d| s)`` or one more, for the largest ``s`` in [0, 1] whose floors keep it, and the
    values with the largest remainders are the ones rounded up while the floor still holds. Every
    magnitude stays at most ``ceil(|d|)``, so the L-infinity budget and [0, 255] hold too."""
    axes = tuple(range(1, d.ndim))
    shape = (d.shape[0],) + (1,) * (d.ndim - 1)
    limit = psnr_radius(min_psnr, values) * 255.0
    limit2 = limit * limit * (1.0 - 1e-6)  # float32 sums of many squares: keep a hair inside
    limit2 = limit2 if isinstance(limit2, float) else limit2.reshape(shape)

    def fits(q):
        return jnp.sum(q * q, axis=axes).reshape(shape) <= limit2

    def search(fits_at, good, bad):
        # Per image, bisection between a value that fits (good) and one that may not (bad); the
        # energy is monotone in the value, so the result is the fitting value nearest bad.
        def halve(_, bounds):
            good, bad = bounds
            mid = 0.5 * (good + bad)
            ok = fits_at(mid)
            return jnp.where(ok, mid, good), jnp.where(ok, bad, mid)

        return jax.lax.fori_loop(0, _HALVINGS, halve, (good, bad))[0]

    def floored():
        mag = jnp.abs(d)
        ones = jnp.ones(shape, d.dtype)
        s = jnp.where(fits(jnp.floor(mag)), ones, search(lambda s: fits(jnp.floor(mag * s)), 0.0 * ones, ones))
        base = jnp.floor(mag * s)
        flat = jnp.arange(int(np.prod(d.shape[1:])), dtype=jnp.uint32).reshape(d.shape[1:])
        offset = (flat * jnp.uint32(2654435761)).astype(jnp.float32) / np.float32(2**32) * _TIE_SPREAD
        rem = jnp.where(mag * s > base, mag * s - base + offset, -1.0)  # nothing to round up: never
        t = search(lambda t: fits(base + (rem >= t)), 1.5 * ones, 0.5 * ones)
        return jnp.sign(d) * (base + (rem >= t))

    kept = fits(rounded)
    return jax.lax.cond(jnp.all(kept), lambda: rounded, lambda: jnp.where(kept, rounded, floored()))
