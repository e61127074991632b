"""Projections back into the budget around the original (and the [0, 1] box), with random starts.

Radii are in 1/255 pixel units: ``linf_ball(4)`` allows a change of 4/255 per pixel value. A PSNR
floor (:func:`with_psnr_floor`) is in dB, for pixel values in [0, 1].

Both functions of a :class:`Projection` take an optional ``valid``: (N, 2) ints, each image's
height and width at the top left of a canvas (:mod:`ppjax.ops.canvas`). The change is then kept at
zero outside it, and the PSNR floor counts the image's own pixels only.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Projection", "region", "pixel_values", "linf_ball", "l2_ball", "per_image_keys", "psnr_radius", "with_psnr_floor"]

_PER_IMAGE = (1, 2, 3)


class Projection(NamedTuple):
    """``project(x, x0, valid=None, ctx=None) -> x`` inside the budget around ``x0`` and the [0, 1]
    box; ``sample(key, x0, valid=None, ctx=None)`` draws a random start. ``prepare(x0) -> ctx``
    (None: nothing to prepare) computes once what a budget needs of the original (a perceptual
    budget's metric and allowances), so that a loop's steps do not each compute it again; without
    ``ctx`` the functions prepare it themselves."""

    project: Callable[..., jnp.ndarray]
    sample: Callable[..., jnp.ndarray]
    prepare: Callable[[jnp.ndarray], object] | None = None


def region(valid, shape) -> jnp.ndarray | None:
    """(N, H, W, 1) float mask of each image's ``valid`` (N, 2) extent in batches of ``shape``; None
    when ``valid`` is None (the whole image)."""
    if valid is None:
        return None
    valid = jnp.asarray(valid)
    h, w = shape[1:3]
    inside = (jnp.arange(h)[None, :, None] < valid[:, 0, None, None]) & (jnp.arange(w)[None, None, :] < valid[:, 1, None, None])
    return inside[..., None].astype(jnp.float32)


def pixel_values(valid, shape):
    """Pixel values per image: an int for whole images (``valid`` None), else (N,) from ``valid``."""
    if valid is None:
        return int(np.prod(shape[1:]))
    valid = jnp.asarray(valid)
    return (valid[:, 0] * valid[:, 1] * shape[-1]).astype(jnp.float32)


def _inside(x, x0, valid):
    """``x`` with the change outside each image's extent undone."""
    mask = region(valid, x0.shape)
    return x if mask is None else x0 + mask * (x - x0)


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

    def project(x, x0, valid=None, ctx=None):
        return _inside(jnp.clip(jnp.clip(x, x0 - r, x0 + r), 0.0, 1.0), x0, valid)

    def sample(key, x0, valid=None, ctx=None):
        keys = per_image_keys(key, x0.shape[0])
        noise = jax.vmap(lambda k: jax.random.uniform(k, x0.shape[1:], minval=-r, maxval=r))(keys)
        return project(x0 + noise, x0, valid)

    return Projection(project, sample)


def l2_ball(eps: float) -> Projection:
    """L2 ball of radius ``eps``/255 per image (over all pixels and channels)."""
    r = eps / 255.0

    def project(x, x0, valid=None, ctx=None):
        return jnp.clip(x0 + _within_norm(_inside(x, x0, valid) - x0, r), 0.0, 1.0)

    def sample(key, x0, valid=None, ctx=None):
        keys = per_image_keys(key, x0.shape[0])
        d = jax.vmap(lambda k: jax.random.normal(k, x0.shape[1:]))(keys)
        mask = region(valid, x0.shape)
        d = d if mask is None else d * mask
        d = d / jnp.sqrt(jnp.sum(d * d, axis=_PER_IMAGE, keepdims=True))
        u = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 1), (1, 1, 1)))(keys)
        values = pixel_values(valid, x0.shape)
        power = 1.0 / (values if valid is None else values[:, None, None, None])
        return project(x0 + d * r * u**power, x0, valid)

    return Projection(project, sample)


def psnr_radius(min_psnr: float, values):
    """The largest L2 norm (pixel values in [0, 1]) of a change to ``values`` pixel values that
    keeps the PSNR at ``min_psnr`` dB or above: PSNR = -10 log10(||d||^2 / values). ``values``: an
    int (a float back), or an array of counts per image (an array back)."""
    if isinstance(values, (int, np.integer)):
        return float(np.sqrt(values) * 10.0 ** (-min_psnr / 20.0))
    return jnp.sqrt(values) * 10.0 ** (-min_psnr / 20.0)


def with_psnr_floor(projection: Projection, min_psnr: float | None) -> Projection:
    """``projection``, then the change scaled down towards ``x0`` wherever its PSNR would fall below
    ``min_psnr`` dB (None or 0: ``projection`` itself). Scaling by a factor in [0, 1] keeps the
    change inside any ball centred on ``x0`` and inside [0, 1], so both budgets hold at once."""
    if not min_psnr:
        return projection

    def floor(x, x0, valid):
        r = psnr_radius(min_psnr, pixel_values(valid, x0.shape))
        return x0 + _within_norm(x - x0, r if valid is None else r[:, None, None, None])

    return Projection(
        lambda x, x0, valid=None, ctx=None: floor(projection.project(x, x0, valid, ctx), x0, valid),
        lambda key, x0, valid=None, ctx=None: floor(projection.sample(key, x0, valid, ctx), x0, valid),
        projection.prepare,
    )
