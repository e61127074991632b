"""Projections back into the budget around the original (and the [0, 1] box), with random starts.

Radii are in 1/255 pixel units: ``linf_ball(4)`` allows a change of 4/255 per pixel value. A PSNR
floor (:func:`with_psnr_floor`) is in dB, for pixel values in [0, 1].
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Projection", "linf_ball", "l2_ball", "per_image_keys", "psnr_radius", "with_psnr_floor"]

_PER_IMAGE = (1, 2, 3)


class Projection(NamedTuple):
    """``project(x, x0) -> x`` inside the budget around ``x0`` and the [0, 1] box; ``sample`` draws a random start."""

    project: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
    sample: Callable[[jax.Array, jnp.ndarray], jnp.ndarray]


def per_image_keys(key: jax.Array, n: int) -> jax.Array:
    """(n,) keys: ``key`` itself when it already holds one key per image, else split from it."""
    if key.ndim == 1:
        if key.shape[0] != n:
            raise ValueError(f"got {key.shape[0]} keys for {n} images")
        return key
    return jax.random.split(key, n)


def _within_norm(d, r):
    """Each image's change ``d`` scaled down, where needed, to an L2 norm of at most ``r``."""
    norm = jnp.sqrt(jnp.sum(d * d, axis=_PER_IMAGE, keepdims=True))
    return d * jnp.minimum(1.0, r / (norm + 1e-12))


def linf_ball(eps: float) -> Projection:
    """L-infinity ball of radius ``eps``/255."""
    r = eps / 255.0

    def project(x, x0):
        return jnp.clip(jnp.clip(x, x0 - r, x0 + r), 0.0, 1.0)

    def sample(key, x0):
        keys = per_image_keys(key, x0.shape[0])
        noise = jax.vmap(lambda k: jax.random.uniform(k, x0.shape[1:], minval=-r, maxval=r))(keys)
        return project(x0 + noise, x0)

    return Projection(project, sample)


def l2_ball(eps: float) -> Projection:
    """L2 ball of radius ``eps``/255 per image (over all pixels and channels)."""
    r = eps / 255.0

    def project(x, x0):
        return jnp.clip(x0 + _within_norm(x - x0, r), 0.0, 1.0)

    def sample(key, x0):
        keys = per_image_keys(key, x0.shape[0])
        d = jax.vmap(lambda k: jax.random.normal(k, x0.shape[1:]))(keys)
        d = d / jnp.sqrt(jnp.sum(d * d, axis=_PER_IMAGE, keepdims=True))
        u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 1), (1, 1, 1)))(keys)
        return project(x0 + d * r * u ** (1.0 / x0[0].size), x0)

    return Projection(project, sample)


def psnr_radius(min_psnr: float, values: int) -> float:
    """The largest L2 norm (pixel values in [0, 1]) of a change to ``values`` pixel values that
    keeps the PSNR at ``min_psnr`` dB or above: PSNR = -10 log10(||d||^2 / values)."""
    return float(np.sqrt(values) * 10.0 ** (-min_psnr / 20.0))


def with_psnr_floor(projection: Projection, min_psnr: float | None) -> Projection:
    """``projection``, then the change scaled down towards ``x0`` wherever its PSNR would fall below
    ``min_psnr`` dB (None or 0: ``projection`` itself). Scaling by a factor in [0, 1] keeps the
    change inside any ball centred on ``x0`` and inside [0, 1], so both budgets hold at once."""
    if not min_psnr:
        return projection

    def floor(x, x0):
        return x0 + _within_norm(x - x0, psnr_radius(min_psnr, int(np.prod(x0.shape[1:]))))

    return Projection(lambda x, x0: floor(projection.project(x, x0), x0), lambda key, x0: floor(projection.sample(key, x0), x0))
