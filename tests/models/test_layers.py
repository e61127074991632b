"""The fast layer formulations give the same values and gradients as XLA's own operations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ppjax.models.layers import conv_stride1, conv_strided, depthwise_conv, relu6

DIMS = ("NHWC", "HWIO", "NHWC")


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def _compare(mine, reference, *shapes, seed=0):
    rng = np.random.default_rng(seed)
    args = [jnp.asarray(rng.normal(size=s)) for s in shapes]
    out = reference(*args)
    np.testing.assert_allclose(np.asarray(mine(*args)), np.asarray(out), atol=1e-12)
    cotangent = jnp.asarray(rng.normal(size=out.shape))
    for a, b in zip(jax.vjp(mine, *args)[1](cotangent), jax.vjp(reference, *args)[1](cotangent)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-12)


@pytest.mark.parametrize(
    "size, kernel, stride, padding",
    [
        ((9, 7), 3, 2, ((1, 1), (1, 1))),
        ((8, 8), 3, 2, ((0, 1), (0, 1))),
        ((11, 10), 5, 2, ((1, 2), (2, 2))),  # phases with 3 and with 2 taps
        ((10, 9), 5, 1, ((2, 2), (2, 2))),
        ((7, 7), 3, 1, ((0, 0), (0, 0))),
        ((10, 9), 3, 2, ((0, 0), (0, 0))),  # the last input row is never read: no gradient there
    ],
)
@pytest.mark.slow
def test_depthwise_conv_matches_grouped_convolution(size, kernel, stride, padding):
    def reference(x, k):
        return lax.conv_general_dilated(x, k, (stride, stride), padding, dimension_numbers=DIMS, feature_group_count=4)

    _compare(lambda x, k: depthwise_conv(x, k, (stride, stride), padding), reference, (2, *size, 4), (kernel, kernel, 1, 4))


@pytest.mark.parametrize("kernel, padding", [(3, ((1, 1), (1, 1))), (7, ((3, 3), (3, 3))), (3, ((0, 2), (1, 0)))])
def test_conv_stride1_matches_convolution(kernel, padding):
    def reference(x, k):
        return lax.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=DIMS)

    _compare(lambda x, k: conv_stride1(x, k, padding), reference, (2, 9, 8, 3), (kernel, kernel, 3, 5))


@pytest.mark.parametrize(
    "size, channels, kernel, strides, padding",
    [
        ((17, 16), 3, 7, (2, 2), ((3, 3), (3, 3))),  # a stem: all phases in one convolution
        ((9, 10), 3, 3, (2, 2), ((0, 1), (1, 0))),
        ((9, 8), 20, 3, (2, 2), ((1, 1), (1, 1))),  # many channels: one convolution per phase
        ((11, 12), 20, 5, (3, 2), ((2, 2), (1, 2))),
        ((8, 8), 20, 3, (2, 2), ((0, 4), (0, 4))),  # padding past the last output
        ((8, 9), 20, 1, (2, 2), ((0, 0), (0, 0))),  # a kernel smaller than the stride
    ],
)
def test_conv_strided_matches_convolution(size, channels, kernel, strides, padding):
    def reference(x, k):
        return lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=DIMS)

    _compare(lambda x, k: conv_strided(x, k, strides, padding), reference, (2, *size, channels), (kernel, kernel, channels, 5))


def test_relu6_gradient_is_pytorchs():
    x = jnp.asarray([-1.0, 0.0, 0.5, 6.0, 7.0])
    assert np.asarray(relu6(x)).tolist() == [0.0, 0.0, 0.5, 6.0, 6.0]
    # 1 strictly inside (0, 6); 0 at the edges, as torch.nn.functional.relu6 and TF's Relu6Grad.
    assert np.asarray(jax.grad(lambda v: relu6(v).sum())(x)).tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
