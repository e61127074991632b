"""Curves: one monotone piecewise-linear tone curve per RGB channel and one on luma (the ACE /
AdvCF idea of Zhao, Liu and Larson, BMVC 2020, as a photo app's curves tool).

Each curve has ``PIECES`` equal pieces on the input axis; its parameters are each piece's slope
minus one (``d``), so zero is the straight line. The curve is normalised to run from 0 to 1, so
black and white stay where they are, and with every ``d`` above -1 it never decreases. A pixel's
value is read off the curve by linear interpolation between its knots.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ppjax.edits.colour import luma
from ppjax.edits.sliders import Slider

__all__ = ["PIECES", "SLIDERS", "knots", "deviations", "segment", "read_curve", "pointwise", "describe"]

PIECES = 16
SLIDERS = {
    "rgb": Slider(0.3, (3, PIECES), "slope - 1", "a channel's curve steeper over that piece"),
    "luma": Slider(0.4, (PIECES,), "slope - 1", "the luma curve steeper over that piece"),
}


def deviations(d: jnp.ndarray) -> jnp.ndarray:
    """(..., K + 1) knots of the curve minus the straight line, for slopes ``1 + d`` (..., K).
    Exactly zero for ``d == 0``."""
    k = d.shape[-1]
    rise = jnp.concatenate([jnp.zeros(d.shape[:-1] + (1,), d.dtype), jnp.cumsum(d, axis=-1)], axis=-1) / k
    total = rise[..., -1:]
    return (rise - jnp.arange(k + 1, dtype=d.dtype) / k * total) / (1.0 + total)


def knots(d: jnp.ndarray) -> jnp.ndarray:
    """(..., K + 1) values of the curve at 0, 1/K, ..., 1."""
    k = d.shape[-1]
    return jnp.arange(k + 1, dtype=d.dtype) / k + deviations(d)


def segment(x: jnp.ndarray, pieces: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Which of ``pieces`` equal pieces of [0, 1] each value of ``x`` (any shape) lies in (int32,
    clipped to the first and last) and how far across it (a fraction, 0 at its start)."""
    t = jnp.clip(x, 0.0, 1.0) * pieces
    i = jnp.clip(jnp.floor(t), 0, pieces - 1).astype(jnp.int32)
    return i, t - i


def read_curve(dev: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """``x`` (any shape, values in [0, 1]) through the curve whose knot deviations are ``dev``
    (K + 1,): ``x`` plus the deviation interpolated linearly (exactly ``x`` for a zero deviation)."""
    i, f = segment(x, dev.shape[-1] - 1)
    lo, hi = dev[i], dev[i + 1]
    return x + lo + f * (hi - lo)


def pointwise(params: dict, x: jnp.ndarray) -> jnp.ndarray:
    """Pixels (..., 3) through the channel curves, then the luma curve (its change added to every
    channel, so colours keep their hue)."""
    dev = deviations(params["rgb"])
    x = jnp.stack([read_curve(dev[c], x[..., c]) for c in range(3)], axis=-1)
    y = luma(x)
    return x + (read_curve(deviations(params["luma"]), y) - y)[..., None]


def describe(params: dict) -> list[str]:
    """Plain words for a set of curves: where each bends most (its largest change, in 1/255)."""
    out = []
    for name, d in (("red", params["rgb"][0]), ("green", params["rgb"][1]), ("blue", params["rgb"][2]), ("luma", params["luma"])):
        dev = np.asarray(deviations(jnp.asarray(d))) * 255.0
        j = int(np.argmax(np.abs(dev)))
        if abs(dev[j]) >= 0.5:
            out.append(f"{name} curve {dev[j]:+.0f}/255 at {j / (len(dev) - 1) * 100:.0f}% input")
    return out
