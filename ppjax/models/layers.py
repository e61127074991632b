"""Layers shared by the model ports."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


class Conv(nn.Module):
    """2-D convolution, NHWC, with Flax's parameter names (``kernel`` (kh, kw, in/groups, out), ``bias``).

    Same results as ``flax.linen.Conv`` with explicit padding; 1x1 convolutions are computed as a
    matrix product over channels because XLA:CPU runs them several times faster that way than
    through its convolution path (measured 44 ms vs 6.4 ms for 8x64x64x256 -> 64 on 2 cores).
    """

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
    feature_group_count: int = 1
    use_bias: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        in_features = x.shape[-1]
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (*self.kernel_size, in_features // self.feature_group_count, self.features),
            jnp.float32,
        ).astype(self.dtype)
        x = x.astype(self.dtype)
        pointwise = self.kernel_size == (1, 1) and self.feature_group_count == 1 and self.padding == ((0, 0), (0, 0))
        if pointwise:
            sh, sw = self.strides
            y = jnp.einsum("nhwc,cd->nhwd", x[:, ::sh, ::sw, :], kernel[0, 0])
        else:
            y = lax.conv_general_dilated(
                x,
                kernel,
                self.strides,
                self.padding,
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=self.feature_group_count,
            )
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
        return y


def _pool_windows(x):
    """The nine strided (N, Ho, Wo, C) windows of a 3x3/s2/p1 pool, in PyTorch's scan order."""
    n, h, w, c = x.shape
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    return [xp[:, i : i + 2 * (ho - 1) + 1 : 2, j : j + 2 * (wo - 1) + 1 : 2, :] for i in range(3) for j in range(3)]


@jax.custom_vjp
def max_pool_3x3_s2(x):
    """3x3 max pool, stride 2, padding 1 (PyTorch's ``MaxPool2d(3, 2, 1)``), NHWC.

    Same values and gradient as PyTorch: on ties the gradient goes to the first maximum in
    row-major window order (real photos have flat, saturated areas, so ties at positive values do
    occur). Written with strided slices, pads and selects instead of ``reduce_window``, whose
    gradient (select-and-scatter) XLA:CPU runs 3.8x slower (219 ms vs 58 ms, 8x128x128x64).
    """
    windows = _pool_windows(x)
    out = windows[0]
    for win in windows[1:]:
        out = jnp.maximum(out, win)
    return out


def _max_pool_fwd(x):
    out = max_pool_3x3_s2(x)
    return out, (x, out)


def _max_pool_bwd(residuals, g):
    x, out = residuals
    n, h, w, c = x.shape
    ho, wo = out.shape[1], out.shape[2]
    zero = jnp.zeros((), g.dtype)
    taken = jnp.zeros(out.shape, bool)
    grad_padded = jnp.zeros((n, h + 2, w + 2, c), g.dtype)
    for k, win in enumerate(_pool_windows(x)):
        i, j = divmod(k, 3)
        first = (win == out) & ~taken
        taken = taken | first
        # Spread this window's share back onto the padded input grid: rows i, i+2, ...
        grad_padded = grad_padded + lax.pad(
            jnp.where(first, g, zero),
            zero,
            ((0, 0, 0), (i, h + 2 - i - (2 * ho - 1), 1), (j, w + 2 - j - (2 * wo - 1), 1), (0, 0, 0)),
        )
    return (grad_padded[:, 1:-1, 1:-1, :],)


max_pool_3x3_s2.defvjp(_max_pool_fwd, _max_pool_bwd)
