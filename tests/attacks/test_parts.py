"""The attack parts: objectives, terms, random starts, the loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppjax import attacks
from ppjax.models import nima


@pytest.mark.slow
def test_per_image_keys_make_random_starts_independent_of_the_batch(photos):
    x0 = jnp.asarray(photos, jnp.float32) / 255
    keys = jax.random.split(jax.random.key(0), len(photos))
    for ball in (attacks.linf_ball(4.0), attacks.l2_ball(200.0)):
        together = np.asarray(ball.sample(keys, x0))
        alone = np.asarray(ball.sample(keys[2:3], x0[2:3]))
        # The same draw; only float rounding in the projection may differ with the batch's shape.
        assert np.abs(together[2] - alone[0]).max() <= 1e-6
        assert np.abs(together[2] - together[3]).max() > 1e-3

@pytest.mark.slow
def test_terms_values(generated_nima):
    x0 = jnp.asarray(np.random.default_rng(0).random((2, 32, 32, 3)), jnp.float32)
    x = jnp.clip(x0 + 0.05, 0, 1)
    apply, variables = generated_nima
    expected = nima.score_moments(apply(variables, x))[0]
    term = attacks.appeal(apply, variables, 3.0)
    assert np.allclose(np.asarray(term.value(term.variables, x, x0)), np.asarray(expected), atol=1e-5)
    ssim, ciede = attacks.perceptual("ssim", 1.0), attacks.perceptual("ciede2000", 1.0)
    assert np.allclose(np.asarray(ssim.value(ssim.variables, x0, x0)), 0.0, atol=1e-6)
    assert (np.asarray(ssim.value(ssim.variables, x, x0)) < 0).all()
    assert (np.asarray(ciede.value(ciede.variables, x, x0)) < 0).all()
    with pytest.raises(ValueError):
        attacks.perceptual("psnr", 1.0)

def test_objectives_leads():
    logits = jnp.asarray([[3.0, 1.0, 0.5], [0.0, 2.0, 1.0]])
    labels = jnp.asarray([0, 0])
    assert np.allclose(np.asarray(attacks.cross_entropy().lead(logits, labels)), [-2.0, 2.0])
    assert np.allclose(np.asarray(attacks.margin(kappa=1.0).value(logits, labels)), [-2.0, 1.0])
    group = attacks.away_from_group([0, 1], 3)
    assert np.allclose(np.asarray(group.lead(logits, labels)), [-2.5, -1.0])  # top-1 inside the group both times
    assert (np.asarray(group.value(logits, labels)) < 0).all()

def test_iterate_continues_from_start_inside_the_original_budget(linear, photos):
    x0 = jnp.asarray(photos[:4], jnp.float32) / 255.0
    labels = (jnp.argmax(linear.apply(linear.variables, x0), -1),)
    far = jnp.clip(x0 + 10 / 255.0, 0, 1)  # outside a 3/255 budget around x0
    kwargs = dict(step_size=1.0, early_stop=False)
    stay = attacks.iterate([linear], attacks.sign_step(), attacks.linf_ball(3.0), steps=0, **kwargs)
    np.testing.assert_allclose(stay(jax.random.key(0), x0, labels, start=far), jnp.clip(far, x0 - 3 / 255, x0 + 3 / 255), atol=1e-7)
    refine = attacks.iterate([linear], attacks.sign_step(), attacks.linf_ball(3.0), steps=2, **kwargs)
    out = refine(jax.random.key(0), x0, labels, start=far)
    assert float(jnp.abs(out - x0).max()) <= 3 / 255.0 + 1e-6
    assert not np.allclose(np.asarray(out), np.asarray(refine(jax.random.key(0), x0, labels)))
