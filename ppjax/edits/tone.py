"""Tone: exposure, contrast, highlights, shadows, and clarity (detail on luma, the EdgeFool idea of
Shamsabadi, Oh and Cavallaro, ICASSP 2020, as one slider rather than a network).

Each slider's change is written as ``f(x, value) - f(x, 0)`` added to the pixels, so that zero
changes nothing, bit for bit. Contrast, highlights, shadows and clarity move luma and add the same
change to each channel (hue kept); exposure scales linear light.
"""

from __future__ import annotations

import jax.numpy as jnp

from ppjax.edits.colour import linear_to_srgb, luma, srgb_to_linear
from ppjax.edits.sliders import Slider

__all__ = ["SLIDERS", "CLARITY_RADIUS", "CLARITY_EPS", "pointwise", "describe"]

SLIDERS = {
    "exposure": Slider(0.5, (), "EV", "brighter (linear light times 2^EV)"),
    "contrast": Slider(0.25, (), "", "more contrast (an S curve on luma)"),
    "highlights": Slider(0.5, (), "", "brighter highlights"),
    "shadows": Slider(0.5, (), "", "brighter shadows"),
    "clarity": Slider(0.5, (), "", "more local detail (luma minus its guided-filter base, added back)"),
}
#: Clarity's guided filter: its window radius as a fraction of the photo's short side (so the look
#: is the same at every resolution), and its eps (luma variance below which detail counts as
#: detail rather than edge).
CLARITY_RADIUS = 0.02
CLARITY_EPS = 0.01


def _contrast(y):
    # An S curve that keeps 0, 1/2 and 1 in place; at the slider's limit its slope stays positive.
    return 4.0 * y * (1.0 - y) * (2.0 * y - 1.0)


def _shadows(y):
    return 6.75 * y * (1.0 - y) ** 2  # peaks at 1 for y = 1/3, zero at black and white


def _highlights(y):
    return 6.75 * y * y * (1.0 - y)  # peaks at 1 for y = 2/3


def pointwise(params: dict, x: jnp.ndarray, detail: jnp.ndarray | None) -> jnp.ndarray:
    """Pixels (..., 3) in [0, 1] through the tone sliders; ``detail`` (...,) is the original's luma
    minus its guided-filter base (:mod:`ppjax.edits.guided`), None to leave clarity out."""
    if detail is not None:
        x = x + (params["clarity"] * detail)[..., None]
    lin = srgb_to_linear(jnp.clip(x, 0.0, 1.0))
    x = x + (linear_to_srgb(lin * 2.0 ** params["exposure"]) - linear_to_srgb(lin))
    y = jnp.clip(luma(x), 0.0, 1.0)
    x = x + (params["contrast"] * _contrast(y))[..., None]
    y = jnp.clip(luma(x), 0.0, 1.0)
    return x + (0.25 * (params["shadows"] * _shadows(y) + params["highlights"] * _highlights(y)))[..., None]


def describe(params: dict) -> list[str]:
    out = []
    for name in SLIDERS:
        v = float(params[name])
        if name == "exposure" and abs(v) >= 0.01:
            out.append(f"exposure {v:+.2f} EV")
        elif name != "exposure" and abs(v) >= 0.005:
            out.append(f"{name} {v * 100:+.0f}")
    return out
