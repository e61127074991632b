"""Ghost networks (skip erosion): the network itself without a ghost, bit for bit; each residual
block's skip path times a factor in [1 - tau, 1 + tau] drawn per image and block; an image's
ghost comes from its own key, never from its batch (random weights: the property is the
network's structure, not its training)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppjax.attacks.transfer import ghost_draws
from ppjax.models import Model
from ppjax.models.layers import Ghost


def _keys(n):
    return jnp.stack([jax.random.fold_in(jax.random.key(5), i) for i in range(n)])


def test_factors_lie_in_the_range_and_differ_per_image_and_block():
    ghost = Ghost(_keys(64), 0.2)
    f = np.asarray(ghost.factors(jnp.float32))[:, 0, 0, 0]
    assert f.shape == (64,) and f.min() >= 0.8 and f.max() <= 1.2 and f.std() > 0.05
    assert not np.allclose(np.asarray(ghost.at(1).factors(jnp.float32))[:, 0, 0, 0], f)
    np.testing.assert_array_equal(np.asarray(Ghost(_keys(3), 0.0).factors(jnp.float32)), 1.0)


@pytest.mark.parametrize("name", ["mbconv", "inverted residual"])
def test_a_block_without_activation_after_the_sum_scales_its_skip_path(name):
    from ppjax.models.efficientnet_lite import MBConvBlock
    from ppjax.models.mobilenet_v2 import InvertedResidual

    block = {"mbconv": MBConvBlock(3, 1, 6, 8, 8, 16), "inverted residual": InvertedResidual(6, 8, 8, 1, 16)}[name]
    x = jax.random.normal(jax.random.key(1), (3, 16, 16, 8))
    variables = block.init(jax.random.key(0), x)
    ghost = Ghost(_keys(3), 0.3)
    plain, eroded = block.apply(variables, x), block.apply(variables, x, ghost)
    np.testing.assert_allclose(np.asarray(eroded - plain), np.asarray((ghost.factors(x.dtype) - 1.0) * x), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet-lite0", "mobilenet-v2", "resnet18"])
def test_a_model_is_itself_without_a_ghost_and_each_image_meets_its_own(name):
    from tests.models.test_skip_gradient import random_model

    model, variables, x = random_model(name, 3)
    assert model.has_ghost
    np.testing.assert_array_equal(np.asarray(model.apply(variables, x, None)), np.asarray(model.logits(x)))
    keys = _keys(3)
    ghost = ghost_draws(keys, 4, 1, 0, 0.3)
    eroded = np.asarray(model.apply(variables, x, ghost))
    assert np.abs(eroded - np.asarray(model.logits(x))).max() > 1e-3
    alone = np.asarray(model.apply(variables, x[1:2], ghost_draws(keys[1:2], 4, 1, 0, 0.3)))
    np.testing.assert_allclose(alone[0], eroded[1], atol=1e-4)  # its own key, not its batch
    later = np.asarray(model.apply(variables, x, ghost_draws(keys, 5, 1, 0, 0.3)))
    assert np.abs(later - eroded).max() > 1e-4  # another step, another ghost


def test_ghost_draws_are_draw_major_and_none_at_zero():
    keys = _keys(2)
    assert ghost_draws(keys, 0, 3, 0, 0.0) is None
    g = ghost_draws(keys, 7, 3, 1, 0.25)
    assert g.keys.shape == (6,) and g.tau == 0.25
    # Draw d of image n sits at d * N + n: image 1's draws are rows 1, 3, 5, and they are its own.
    alone = ghost_draws(keys[1:], 7, 3, 1, 0.25)
    for d in range(3):
        assert jnp.array_equal(jax.random.key_data(g.keys[d * 2 + 1]), jax.random.key_data(alone.keys[d]))
    assert not jnp.array_equal(jax.random.key_data(g.keys[0]), jax.random.key_data(g.keys[2]))


def test_networks_without_residual_blocks_take_no_ghost():
    from ppjax.models import densenet, mobilenet

    assert not Model(spec=None, apply=lambda v, x: x, variables=(), labels=()).has_ghost
    for module in (densenet.densenet161(10), mobilenet.MobileNet()):
        assert not Model(spec=None, apply=lambda v, x: x, variables=(), labels=(), module=module).has_ghost
