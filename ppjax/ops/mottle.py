"""Mottle: a change's low-frequency luminance contrast, the part of it an eye sees first on a smooth
area, and a cap on it that an attack can hold.

CIEDE2000 is a per-pixel difference between flat patches on a mid-grey surround. It misses a
change that is coherent over tens of pixels, where the eye's contrast sensitivity is highest, and
it weighs lightness in dark colours down (its S_L): a dark sky protected at a mean CIEDE2000 of
0.93 showed blotches 20-40 pixels across at 1:1 (docs/visibility.md). The model here looks at the
luminance the screen emits: the change in relative luminance ``Y`` (sRGB decoded, Rec. 709
weights), low-passed by a Gaussian of :data:`SIGMA` pixels, over the local luminance plus
:data:`FLARE` (a screen's black and the light it reflects): a Weber contrast. Pixel-level grain
averages out in the low-pass; a blotch keeps its contrast.

Pixels are float (N, H, W, 3) in [0, 1] (changes in 1/255 units where named so); contrasts are
fractions (0.02 is 2%).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ppjax.ops.metrics import positive_power
from ppjax.ops.perceptual import SCREEN_FLARE, _box

__all__ = ["LUMINANCE", "FLARE", "SIGMA", "WINDOW", "MASK_CONTRAST", "REACH", "linear", "luminance_slope", "kernels", "blur", "mottle_cap", "cap_change"]

#: Rec. 709 / sRGB weights of relative luminance.
LUMINANCE = (0.2126, 0.7152, 0.0722)
#: The luminance a screen shows at black, as a fraction of its white (its own black level and the
#: room's light it reflects): dark areas are compared against their luminance plus this (the
#: perceptual budget's dark allowance uses the same).
FLARE = SCREEN_FLARE
#: The low-pass's Gaussian sigma in the photo's own pixels (looked at 1:1): patterns wider than
#: about 2 pi sigma, ten pixels, pass; pixel-level grain does not.
SIGMA = 1.5
#: Side (pixels) of the square window whose luminance sets a pixel's adaptation and texture.
WINDOW = 13
#: The original's own RMS luminance contrast over :data:`WINDOW` at which masking starts to raise
#: the cap: below it an area counts as smooth; above it the cap grows in proportion (a change
#: hides in texture of a few times its contrast).
MASK_CONTRAST = 0.05


def linear(x: jnp.ndarray) -> jnp.ndarray:
    """sRGB values in [0, 1] decoded to linear light."""
    x = jnp.clip(x, 0.0, 1.0)
    return jnp.where(x <= 0.04045, x / 12.92, positive_power((jnp.maximum(x, 0.04045) + 0.055) / 1.055, 2.4))


def luminance_slope(x0: jnp.ndarray) -> jnp.ndarray:
    """(..., 3) d Y / d value of each channel at ``x0`` (..., 3), per 1/255 of value."""
    x = jnp.clip(x0, 0.0, 1.0)
    slope = jnp.where(x <= 0.04045, 1.0 / 12.92, 2.4 / 1.055 * positive_power((jnp.maximum(x, 0.04045) + 0.055) / 1.055, 1.4))
    return slope * jnp.asarray(LUMINANCE, x.dtype) / 255.0


#: Half the taps of the attack's low-pass: :data:`SIGMA`'s three sigmas (a smaller sigma, for a
#: working copy shrunk from its photo, takes the same taps).
REACH = int(np.ceil(3.0 * SIGMA))


def kernels(scale) -> jnp.ndarray:
    """(N, 2 REACH + 1) the low-pass's taps on each canvas of a batch whose pixels stand for
    1 / ``scale`` (N,) of its photo's: a Gaussian of :data:`SIGMA` times ``scale`` canvas pixels,
    :data:`SIGMA` photo pixels (the change a person sees at 1:1 is the one carried back)."""
    sigma = jnp.maximum(SIGMA * jnp.asarray(scale, jnp.float32).reshape(-1), 0.25)
    k = jnp.exp(-0.5 * (jnp.arange(-REACH, REACH + 1, dtype=jnp.float32)[None] / sigma[:, None]) ** 2)
    return k / jnp.sum(k, axis=1, keepdims=True)


def blur(a: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """(N, H, W) planes blurred by each plane's separable ``kernel`` (N, 2 REACH + 1) (from
    :func:`kernels`), zero beyond the edges (a change is zero there; a canvas's padding holds none)."""
    r = (kernel.shape[1] - 1) // 2
    for axis in (1, 2):
        pad = [(0, 0)] * a.ndim
        pad[axis] = (r, r)
        p = jnp.pad(a, pad)
        n = a.shape[axis]
        a = sum(kernel[:, i, None, None] * jax.lax.slice_in_dim(p, i, i + n, axis=axis) for i in range(2 * r + 1))
    return a


def _window_mean(a: jnp.ndarray) -> jnp.ndarray:
    """(N, H, W) mean over each pixel's :data:`WINDOW` square, the edges repeated beyond them."""
    r = WINDOW // 2
    return _box(jnp.pad(a, ((0, 0), (r, r), (r, r)), mode="edge"), WINDOW)


def mottle_cap(x0: jnp.ndarray, contrast: float) -> jnp.ndarray:
    """(N, H, W) the largest low-passed luminance change (relative luminance) each pixel of the
    originals ``x0`` (N, H, W, 3) may carry: ``contrast`` times the local luminance (over
    :data:`WINDOW`) plus :data:`FLARE`, raised in proportion where the original's own RMS
    luminance contrast there is over :data:`MASK_CONTRAST`. (On a canvas the padding beyond a
    photo darkens its edge's surroundings: a smaller cap there, never a larger one.)"""
    lin = linear(x0)
    y = LUMINANCE[0] * lin[..., 0] + LUMINANCE[1] * lin[..., 1] + LUMINANCE[2] * lin[..., 2]  # not a product over the last axis (see cap_change)
    mean = _window_mean(y)
    spread = jnp.sqrt(jnp.maximum(_window_mean((y - mean) ** 2), 0.0))
    base = mean + FLARE
    return contrast * base * jnp.maximum(1.0, spread / base / MASK_CONTRAST)


def cap_change(d: jnp.ndarray, slope: jnp.ndarray, cap: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """Changes ``d`` (N, H, W, 3; 1/255 units) less the grey change that takes their low-passed
    luminance (``slope``: :func:`luminance_slope` of the originals; ``kernel``: :func:`kernels`)
    back to within ``cap`` (N, H, W) where it is over. One pass: the low-pass of what is taken
    away is itself smoothed, so a loop that calls this at every step holds the cap; the
    high-frequency part is left as it is."""
    # Channel by channel, not a reduction over the last axis: XLA:CPU runs a sum over an innermost
    # axis of 3 as scalar code (97 ms on a 1088 canvas, against a few for three planes).
    lum = d[..., 0] * slope[..., 0] + d[..., 1] * slope[..., 1] + d[..., 2] * slope[..., 2]
    low = blur(lum, kernel)
    excess = low - jnp.clip(low, -cap, cap)
    grey = excess / jnp.maximum(slope[..., 0] + slope[..., 1] + slope[..., 2], 1e-9)
    return d - grey[..., None]
