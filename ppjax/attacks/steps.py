"""Step rules: how an attack turns the gradient into a direction, as optax ``GradientTransformation``s.

An attack *ascends* its objective: each rule maps the gradient of the objective (per pixel, a batch
(N, H, W, 3)) to a direction, and the loop adds ``step_size / 255`` times that direction. ``init``
is called with the original batch ``x0``. Rules compose with ``optax.chain`` like optimisers do:
MI-FGSM's momentum is L1 normalisation, then ``optax.trace``, then the sign.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax.numpy as jnp
import optax

__all__ = ["sign_step", "momentum_sign_step", "l2_step", "masked_sign_step", "normalise_l1", "normalise_l2", "scale_by_mask"]

_PER_IMAGE = (1, 2, 3)


def normalise_l1() -> optax.GradientTransformation:
    """Divide each image's gradient by its mean absolute value (MI-FGSM's normalisation)."""

    def update(g, state, params=None):
        return g / (jnp.mean(jnp.abs(g), axis=_PER_IMAGE, keepdims=True) + 1e-12), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def normalise_l2() -> optax.GradientTransformation:
    """Scale each image's gradient to unit L2 norm (steepest ascent under L2)."""

    def update(g, state, params=None):
        return g / (jnp.sqrt(jnp.sum(g * g, axis=_PER_IMAGE, keepdims=True)) + 1e-12), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class MaskState(NamedTuple):
    mask: jnp.ndarray


def scale_by_mask(mask_fn: Callable[[jnp.ndarray], jnp.ndarray]) -> optax.GradientTransformation:
    """Multiply by ``mask_fn(x0)`` ((N, H, W, 1) in [0, 1]), computed once from the original batch."""

    def update(g, state, params=None):
        return state.mask * g, state

    return optax.GradientTransformation(lambda x0: MaskState(mask_fn(x0)), update)


def sign_step() -> optax.GradientTransformation:
    """FGSM's rule: the sign of the gradient (steepest ascent under L-infinity)."""
    return optax.scale_by_sign()


def momentum_sign_step(decay: float = 1.0) -> optax.GradientTransformation:
    """MI-FGSM (Dong et al. 2018): accumulate L1-normalised gradients with ``decay``, step by their sign."""
    return optax.chain(normalise_l1(), optax.trace(decay=decay, nesterov=False), optax.scale_by_sign())


def l2_step() -> optax.GradientTransformation:
    """The gradient scaled to unit L2 norm per image."""
    return normalise_l2()


def masked_sign_step(mask_fn: Callable[[jnp.ndarray], jnp.ndarray]) -> optax.GradientTransformation:
    """Sign steps scaled per pixel by ``mask_fn(x0)``: zero where a change would show (see
    :mod:`ppjax.ops.concealment`)."""
    return optax.chain(optax.scale_by_sign(), scale_by_mask(mask_fn))
