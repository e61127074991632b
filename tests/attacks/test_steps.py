"""Step rules are optax GradientTransformations: each against its written-out definition, and
composable with optax's own transformations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ppjax import attacks


def _grads(n=4):
    keys = jax.random.split(jax.random.key(0), n)
    return [jax.random.normal(k, (2, 8, 8, 3)) for k in keys]


def _run(rule, grads, x0):
    state, out = rule.init(x0), []
    for g in grads:
        d, state = rule.update(g, state, x0)
        out.append(np.asarray(d))
    return out


def test_sign_and_l2():
    x0 = jnp.zeros((2, 8, 8, 3))
    grads = _grads()
    for g, d in zip(grads, _run(attacks.sign_step(), grads, x0)):
        np.testing.assert_array_equal(d, np.sign(np.asarray(g)))
    for g, d in zip(grads, _run(attacks.l2_step(), grads, x0)):
        np.testing.assert_allclose(np.sqrt((d**2).sum(axis=(1, 2, 3))), 1.0, rtol=1e-5)
        np.testing.assert_allclose(d * np.linalg.norm(np.asarray(g).reshape(2, -1), axis=1)[:, None, None, None], g, rtol=1e-4, atol=1e-6)


def test_momentum_is_mifgsm():
    """Dong et al. 2018: m <- decay * m + g / mean|g| (per image), step by sign(m)."""
    x0 = jnp.zeros((2, 8, 8, 3))
    grads = _grads(5)
    m = np.zeros((2, 8, 8, 3), np.float32)
    for g, d in zip(grads, _run(attacks.momentum_sign_step(0.7), grads, x0)):
        g = np.asarray(g)
        m = 0.7 * m + g / (np.abs(g).mean(axis=(1, 2, 3), keepdims=True) + 1e-12)
        np.testing.assert_array_equal(d, np.sign(m))


def test_masked_uses_the_mask_of_the_original():
    x0 = jnp.asarray(np.random.default_rng(0).random((2, 8, 8, 3)), jnp.float32)
    mask_fn = lambda x: (x[..., :1] > 0.5).astype(jnp.float32)  # noqa: E731
    grads = _grads(2)
    for g, d in zip(grads, _run(attacks.masked_sign_step(mask_fn), grads, x0)):
        np.testing.assert_array_equal(d, np.asarray(mask_fn(x0)) * np.sign(np.asarray(g)))


def test_rules_compose_with_optax_and_run_in_the_loop(linear, photos):
    """A rule chained with optax.scale(0.5) takes half steps: after one step from the image itself
    (no random start) every pixel moved by half the step size, or not at all where clipped."""
    x0 = jnp.asarray(photos[:2], jnp.float32) / 255
    labels = (jnp.argmax(linear.apply(linear.variables, x0), -1),)
    half = optax.chain(attacks.sign_step(), optax.scale(0.5))
    loop = attacks.iterate([linear], half, attacks.linf_ball(8.0), steps=1, step_size=2.0, early_stop=False)
    moved = np.abs(np.asarray(loop(jax.random.key(0), x0, labels)) - np.asarray(x0)) * 255
    inside = (np.asarray(x0) > 2 / 255) & (np.asarray(x0) < 1 - 2 / 255)
    np.testing.assert_allclose(moved[inside], 1.0, atol=1e-3)
