"""Colour grade: white balance (temperature, tint), saturation, vibrance, and a/b shifts per hue
sector (the ColorFool idea of Shamsabadi et al., CVPR 2020, without a segmentation network).

ColorFool keeps sky and water blue, vegetation green and people untouched; here those regions are
found from colour alone, as soft memberships in CIELAB (hue angle, chroma, lightness), and on them a
sector's shift may only move a pixel along its own chroma direction: its hue stays where it is.
Saturation and vibrance scale chroma (hue kept); vibrance spares skin. Greys get no shift (the
shift fades in with chroma), so a neutral wall stays neutral.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ppjax.edits.colour import lab_to_srgb, linear_to_srgb, srgb_to_lab, srgb_to_linear
from ppjax.edits.sliders import Slider

__all__ = ["SLIDERS", "SECTORS", "GUARDS", "pointwise", "guard", "membership", "describe"]

#: Hue sectors of the per-region shifts: centres in degrees of CIELAB hue (a raised cosine each, a
#: partition of unity around the circle).
SECTORS = (0.0, 60.0, 120.0, 180.0, 240.0, 300.0)
SLIDERS = {
    "temperature": Slider(1.0, (), "", "warmer (red gain up, blue down; 1 = 2^0.1 on linear light)"),
    "tint": Slider(0.5, (), "", "towards magenta (green gain down)"),
    "saturation": Slider(0.3, (), "", "more saturated (chroma times 1 + value)"),
    "vibrance": Slider(0.3, (), "", "more saturated where chroma is low, sparing skin"),
    "shifts": Slider(5.0, (len(SECTORS), 2), "CIELAB a, b", "each hue sector's colours moved by (a, b)"),
}
#: Colour families kept in their hue (ColorFool's semantic regions): (hue from, hue to) in degrees,
#: (chroma from, to), (L from, to); edges soft over a few units.
GUARDS = {
    "skin": ((20.0, 75.0), (8.0, 50.0), (25.0, 92.0)),
    "sky and water": ((200.0, 295.0), (6.0, 80.0), (20.0, 98.0)),
    "vegetation": ((95.0, 170.0), (8.0, 90.0), (10.0, 90.0)),
}


def _between(v, lo, hi, soft):
    return jax.nn.sigmoid((v - lo) / soft) * jax.nn.sigmoid((hi - v) / soft)


def _hue_chroma(lab):
    a, b = lab[..., 1], lab[..., 2]
    c2 = a * a + b * b
    c = jnp.sqrt(jnp.maximum(c2, 1e-12))
    grey = c2 < 1e-12  # arctan2's gradient is 0/0 there; a grey pixel's hue is never used (no chroma to move)
    hue = jnp.degrees(jnp.arctan2(jnp.where(grey, 0.0, b), jnp.where(grey, 1.0, a)))
    hue = jnp.where(hue < 0.0, hue + 360.0, hue)  # [0, 360]; a float modulo is slow on a CPU
    return hue, c


def membership(lab: jnp.ndarray, family: str) -> jnp.ndarray:
    """(...,) soft membership in [0, 1] of CIELAB pixels in one of :data:`GUARDS`."""
    (h0, h1), (c0, c1), (l0, l1) = GUARDS[family]
    hue, c = _hue_chroma(lab)
    return _between(hue, h0, h1, 4.0) * _between(c, c0, c1, 2.0) * _between(lab[..., 0], l0, l1, 3.0)


def guard(lab: jnp.ndarray) -> jnp.ndarray:
    """(...,) how strongly a pixel is held to its hue: the largest of its memberships."""
    return jnp.max(jnp.stack([membership(lab, f) for f in GUARDS]), axis=0)


def _sector_shift(hue, shifts):
    """(..., 2) the (a, b) shift at each hue: the sectors' shifts (K, 2) blended by raised cosines
    of one sector's width around their centres (equally spaced from 0 degrees). A hue lies between
    two centres, whose weights are w and 1 - w; one cosine a pixel, not one per sector (the cosine
    and a K-wide contraction per pixel were most of the grade's cost at full size)."""
    width = 360.0 / len(SECTORS)
    k = jnp.clip(jnp.floor(hue / width), 0, len(SECTORS) - 1)
    w = 0.5 * (1.0 + jnp.cos(jnp.pi * (hue - k * width) / width))
    k = k.astype(jnp.int32)
    return w[..., None] * jnp.take(shifts, k, axis=0) + (1.0 - w)[..., None] * jnp.take(shifts, (k + 1) % len(SECTORS), axis=0)


def _white_balance(params, x):
    t, g = params["temperature"], params["tint"]
    gains = 2.0 ** (0.1 * jnp.stack([t + 0.5 * g, -g, -t + 0.5 * g], axis=-1))
    lin = srgb_to_linear(jnp.clip(x, 0.0, 1.0))
    return x + (linear_to_srgb(lin * gains) - linear_to_srgb(lin))


def _chroma_moves(params, lab):
    hue, c = _hue_chroma(lab)
    ab = lab[..., 1:]
    skin = membership(lab, "skin")
    scale = (1.0 + params["saturation"]) * (1.0 + params["vibrance"] * (1.0 - skin) * jnp.clip(1.0 - c / 60.0, 0.0, 1.0))
    shift = _sector_shift(hue, params["shifts"]) * (c / (c + 10.0))[..., None]
    g = guard(lab)[..., None]
    unit = ab / c[..., None]
    along = jnp.maximum(jnp.sum(shift * unit, axis=-1, keepdims=True), -0.5 * c[..., None])  # never through grey
    moved = ab * scale[..., None] + (1.0 - g) * shift + g * along * unit
    return jnp.concatenate([lab[..., :1], moved], axis=-1)


def pointwise(params: dict, x: jnp.ndarray) -> jnp.ndarray:
    """Pixels (..., 3) through white balance, then saturation, vibrance and the sector shifts."""
    x = _white_balance(params, x)
    lab = srgb_to_lab(jnp.clip(x, 0.0, 1.0))
    return x + (lab_to_srgb(_chroma_moves(params, lab)) - lab_to_srgb(lab))


def describe(params: dict) -> list[str]:
    out = []
    for name in ("temperature", "tint", "saturation", "vibrance"):
        v = float(params[name])
        if abs(v) >= 0.005:
            out.append(f"{name} {v * 100:+.0f}" + ("%" if name in ("saturation", "vibrance") else ""))
    for centre, (a, b) in zip(SECTORS, jnp.asarray(params["shifts"]).tolist()):
        if max(abs(a), abs(b)) >= 0.5:
            out.append(f"hues near {centre:.0f} deg: a {a:+.1f}, b {b:+.1f}")
    return out
