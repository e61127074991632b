"""Colour spaces the edits work in: linear light, luma, and CIELAB both ways.

Pixels are sRGB float in [0, 1], (..., 3). CIELAB uses the D65 white and the CIE's exact constants
(as :func:`ppjax.ops.metrics.srgb_to_lab`, which this module's inverse undoes to float precision).
"""

from __future__ import annotations

import jax.numpy as jnp

from ppjax.ops.metrics import positive_power, srgb_to_lab

__all__ = ["srgb_to_linear", "linear_to_srgb", "luma", "srgb_to_lab", "lab_to_srgb", "LUMA_WEIGHTS"]

#: Rec. 709 weights, applied to the gamma-encoded values (the luma a photo app's tone sliders move).
LUMA_WEIGHTS = (0.2126, 0.7152, 0.0722)
_WHITE = (0.95047, 1.0, 1.08883)
_XYZ_TO_RGB = (
    (3.2404813432005266, -1.5371515162713185, -0.4985363261688878),
    (-0.9692549499965682, 1.8759900014898907, 0.0415559265582928),
    (0.0556466391351772, -0.2040413383665112, 1.0573110696453443),
)  # the inverse of the matrix in srgb_to_lab


def srgb_to_linear(x: jnp.ndarray) -> jnp.ndarray:
    """sRGB values in [0, 1] to linear light (the sRGB transfer function)."""
    return jnp.where(x <= 0.04045, x / 12.92, positive_power((jnp.maximum(x, 0.04045) + 0.055) / 1.055, 2.4))


def linear_to_srgb(v: jnp.ndarray) -> jnp.ndarray:
    """Linear light to sRGB values; negative light is clamped to 0, values above 1 are kept."""
    v = jnp.maximum(v, 0.0)
    return jnp.where(v <= 0.0031308, 12.92 * v, 1.055 * positive_power(jnp.maximum(v, 0.0031308), 1 / 2.4) - 0.055)


def luma(x: jnp.ndarray) -> jnp.ndarray:
    """(...,) Rec. 709 luma of sRGB pixels (..., 3)."""
    return x @ jnp.asarray(LUMA_WEIGHTS, x.dtype)


def lab_to_srgb(lab: jnp.ndarray) -> jnp.ndarray:
    """CIELAB (D65, L in [0, 100]) (..., 3) to sRGB values, not clipped (out-of-gamut colours
    come back outside [0, 1])."""
    fy = (lab[..., 0] + 16.0) / 116.0
    f = jnp.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], -1)
    eps = 6.0 / 29.0
    xyz = jnp.where(f > eps, f**3, (116.0 * f - 16.0) * 27.0 / 24389.0) * jnp.asarray(_WHITE, lab.dtype)
    return linear_to_srgb(xyz @ jnp.asarray(_XYZ_TO_RGB, lab.dtype).T)
