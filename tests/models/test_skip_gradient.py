"""The skip gradient (SGM): forward unchanged bit for bit, backward the residual branch's gradient
scaled by gamma, in every residual family ppjax attacks (random weights: the property is the
network's structure, not its training)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppjax.models import Model, normalised_apply
from ppjax.models.layers import residual_sum, skip_gradient


def test_skip_gradient_scales_the_branch_only():
    x = jnp.linspace(-1.0, 1.0, 7)

    def block(x, gamma):
        return jnp.sum(residual_sum(x, jnp.sin(3.0 * x), gamma))

    for gamma in (1.0, 0.5, 0.2):
        g = jax.grad(block)(x, gamma)
        np.testing.assert_allclose(g, 1.0 + gamma * 3.0 * np.cos(3.0 * np.asarray(x)), rtol=1e-6)
    assert jnp.array_equal(skip_gradient(jnp.sin(x), 0.3), jnp.sin(x))


def _families():
    from ppjax.models import efficientnet_lite, mobilenet_v2, resnet

    return {
        "efficientnet-lite0": (efficientnet_lite.build(), efficientnet_lite.SPEC),
        "mobilenet-v2": (mobilenet_v2.build(), mobilenet_v2.SPEC),
        "resnet18": (resnet.resnet18(10), efficientnet_lite.SPEC),
    }


def random_model(name: str, batch: int):
    """(a Model of family ``name`` with random weights, its variables, (batch, 64, 64, 3) pixels)."""
    module, spec = _families()[name]
    x = jax.random.uniform(jax.random.key(1), (batch, 64, 64, 3))
    variables = module.init(jax.random.key(0), x)
    return Model(spec=spec, apply=normalised_apply(module, spec), variables=variables, labels=(), module=module), variables, x


def _blocks():
    from ppjax.models.efficientnet_lite import MBConvBlock
    from ppjax.models.mobilenet_v2 import InvertedResidual
    from ppjax.models.resnet import BasicBlock, Bottleneck

    return {
        "mbconv": MBConvBlock(3, 1, 6, 8, 8, 16),
        "inverted residual": InvertedResidual(6, 8, 8, 1, 16),
        "basic": BasicBlock(8),
        "bottleneck": Bottleneck(2),
    }


@pytest.mark.parametrize("name", ["mbconv", "inverted residual", "basic", "bottleneck"])
def test_each_residual_block_scales_its_branch_gradient(name):
    block = _blocks()[name]
    x = jax.random.normal(jax.random.key(1), (1, 16, 16, 8))
    variables = block.init(jax.random.key(0), x)
    shaped = block.clone(skip_gradient=0.25)
    np.testing.assert_array_equal(np.asarray(shaped.apply(variables, x)), np.asarray(block.apply(variables, x)))
    probe = jax.random.normal(jax.random.key(2), x.shape)

    def vjp(module):
        return jax.vjp(lambda x: module.apply(variables, x), x)[1](probe)[0]

    plain, sgm = vjp(block), vjp(shaped)
    if name in ("basic", "bottleneck"):  # the ReLU after the sum gates both paths alike
        gate = (block.apply(variables, x) > 0).astype(jnp.float32)
        identity = probe * gate
    else:
        identity = probe
    np.testing.assert_allclose(np.asarray(sgm), np.asarray(identity + 0.25 * (plain - identity)), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet-lite0", "mobilenet-v2", "resnet18"])
def test_model_with_skip_gradient_keeps_logits_and_changes_the_gradient(name):
    model, variables, x = random_model(name, 2)
    shaped = model.with_skip_gradient(0.5)
    assert model.with_skip_gradient(1.0) is model
    np.testing.assert_array_equal(np.asarray(shaped.logits(x)), np.asarray(model.logits(x)))

    def loss(apply):
        return jax.grad(lambda x: jnp.sum(apply(variables, x)[:, 0]))(x)

    plain, sgm = np.asarray(loss(model.apply)), np.asarray(loss(shaped.apply))
    assert np.abs(plain - sgm).max() > 1e-3 * np.abs(plain).max()


def test_networks_without_residual_blocks_come_back_as_they_are():
    from ppjax.models import densenet  # noqa: F401  (a family with concatenated, not added, skips)

    model = Model(spec=None, apply=lambda v, x: x, variables=(), labels=())
    assert model.with_skip_gradient(0.5) is model
    with pytest.raises(ValueError, match="gamma"):
        model.with_skip_gradient(0.0)
