"""Keras MobileNet (v1, alpha 1, depth multiplier 1, no top) in Flax, with Keras' layer names.

Keras semantics that differ from PyTorch's and matter for parity with the original weights:
BatchNormalization epsilon 1e-3; ReLU6; ``conv1`` uses TensorFlow-style 'same' padding with stride
2 (bottom/right only on even sizes); the stride-2 depthwise blocks pad ``((0, 1), (0, 1))``
(Keras' ``ZeroPadding2D``) and then convolve 'valid'; stride-1 blocks pad 1 on every side.

Parameter names: ``conv_dw_3/depthwise_kernel`` in Keras is ``params/conv_dw_3/kernel`` here, in
Flax's grouped layout (3, 3, 1, C); ``conv_pw_3_bn/moving_mean`` is ``batch_stats/conv_pw_3_bn/mean``.
Input: (N, H, W, 3) already scaled to [-1, 1]; output: (N, 1024) globally average-pooled features.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ppjax.models.layers import Conv, batch_norm, relu6, tf_same_pads

_BN_EPS = 1e-3  # Keras BatchNormalization default

#: (pointwise filters, stride) of depthwise-separable blocks 1..13.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def _bn_relu6(x, name: str, dtype: Any):
    return relu6(batch_norm(x, name, _BN_EPS, dtype))


class MobileNet(nn.Module):
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = x.astype(self.dtype)
        pads = (tf_same_pads(x.shape[1], 3, 2), tf_same_pads(x.shape[2], 3, 2))
        x = Conv(32, (3, 3), (2, 2), pads, dtype=self.dtype, name="conv1")(x)
        x = _bn_relu6(x, "conv1_bn", self.dtype)
        for i, (filters, stride) in enumerate(BLOCKS, 1):
            pad = ((0, 1), (0, 1)) if stride == 2 else ((1, 1), (1, 1))
            channels = x.shape[-1]
            x = Conv(channels, (3, 3), (stride, stride), pad, feature_group_count=channels, dtype=self.dtype, name=f"conv_dw_{i}")(x)
            x = _bn_relu6(x, f"conv_dw_{i}_bn", self.dtype)
            x = Conv(filters, (1, 1), dtype=self.dtype, name=f"conv_pw_{i}")(x)
            x = _bn_relu6(x, f"conv_pw_{i}_bn", self.dtype)
        return jnp.mean(x, axis=(1, 2))
