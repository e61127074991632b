"""What every edit is made of: named sliders with symmetric ranges around an identity of zero.

An edit's parameters are a dict of arrays, one entry per slider (a scalar, or an array for curves
and per-hue shifts). Zero everywhere is the identity; a slider's range is what a photo app's slider
allows, and :func:`project` clips into it. The attacks optimise ``value / half_range``, so one
learning rate suits sliders of every unit.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import jax.numpy as jnp
import numpy as np

__all__ = ["Slider", "identity", "project", "normalised", "from_normalised", "broadcast"]


class Slider(NamedTuple):
    """One slider: values in [-half_range, half_range] of ``shape``, in ``unit``; ``what`` says in
    a few words what a positive value does."""

    half_range: float
    shape: tuple = ()
    unit: str = ""
    what: str = ""


def identity(sliders: Mapping[str, Slider]) -> dict:
    """The parameters that change nothing (float32 zeros, no batch axis)."""
    return {name: jnp.zeros(s.shape, jnp.float32) for name, s in sliders.items()}


def project(sliders: Mapping[str, Slider], params: dict) -> dict:
    """``params`` clipped into each slider's range (any leading batch axes kept)."""
    return {name: jnp.clip(params[name], -s.half_range, s.half_range) for name, s in sliders.items()}


def normalised(sliders: Mapping[str, Slider], params: dict) -> dict:
    """Each slider's value over its half range: in [-1, 1] inside the bounds."""
    return {name: params[name] / s.half_range for name, s in sliders.items()}


def from_normalised(sliders: Mapping[str, Slider], u: dict) -> dict:
    """The inverse of :func:`normalised`."""
    return {name: u[name] * s.half_range for name, s in sliders.items()}


def broadcast(sliders: Mapping[str, Slider], params: dict, n: int) -> dict:
    """``params`` with a leading axis of ``n`` images: unbatched values are repeated."""
    return {
        name: jnp.broadcast_to(p, (n, *s.shape)) if np.ndim(p) == len(s.shape) else jnp.asarray(p)
        for name, s, p in ((k, sliders[k], params[k]) for k in sliders)
    }

