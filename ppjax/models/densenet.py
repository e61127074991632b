"""DenseNet161 in Flax (the Places365-Standard one), parameter tree mirroring torchvision's state_dict names.

torchvision's ``densenet161``: a 7x7/2 stem of 96 channels, BatchNorm, ReLU and a 3x3/2 max pool, then
four dense blocks of 6, 12, 36 and 24 layers. Each layer (``denselayerK``: BatchNorm ``norm1``,
ReLU, 1x1 ``conv1`` to 4 x 48 channels, BatchNorm ``norm2``, ReLU, 3x3 ``conv2`` to 48 channels)
appends its 48 channels to everything before it. Between blocks, ``transitionK`` (BatchNorm, ReLU,
1x1 convolution to half the channels, 2x2/2 average pool). Then ``norm5``, ReLU, global average
pool and the ``classifier`` (2208 -> classes). Convolutions have no bias; BatchNorm eps 1e-5.

``features.denseblock1.denselayer1.norm1.weight`` in PyTorch is
``params/features/denseblock1/denselayer1/norm1/scale`` here. Input: normalised (N, H, W, 3); output
(N, num_classes) float32 logits.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from ppjax.models.layers import Conv, batch_norm, max_pool_3x3_s2

_BN_EPS = 1e-5


def _bn(x, name: str, dtype: Any):
    return batch_norm(x, name, _BN_EPS, dtype)


def _conv(x, features: int, kernel: int, name: str, dtype: Any, stride: int = 1):
    pad = kernel // 2
    return Conv(features, (kernel, kernel), (stride, stride), ((pad, pad), (pad, pad)), dtype=dtype, name=name)(x)


def avg_pool_2x2(x):
    """torchvision's ``AvgPool2d(2, 2)``: the mean of each 2x2 window; an odd last row or column is dropped."""
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class DenseLayer(nn.Module):
    growth: int
    bottleneck: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        y = _conv(nn.relu(_bn(x, "norm1", self.dtype)), self.bottleneck, 1, "conv1", self.dtype)
        y = _conv(nn.relu(_bn(y, "norm2", self.dtype)), self.growth, 3, "conv2", self.dtype)
        return jnp.concatenate([x, y], axis=-1)


class DenseBlock(nn.Module):
    layers: int
    growth: int
    bottleneck: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        for i in range(self.layers):
            x = DenseLayer(self.growth, self.bottleneck, self.dtype, name=f"denselayer{i + 1}")(x)
        return x


class Transition(nn.Module):
    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        return avg_pool_2x2(_conv(nn.relu(_bn(x, "norm", self.dtype)), self.features, 1, "conv", self.dtype))


class Features(nn.Module):
    """torchvision's ``features`` Sequential (stem, dense blocks, transitions, ``norm5``)."""

    growth: int
    blocks: Sequence[int]
    stem: int
    bn_size: int = 4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = nn.relu(_bn(_conv(x, self.stem, 7, "conv0", self.dtype, stride=2), "norm0", self.dtype))
        x = max_pool_3x3_s2(x)
        self.sow("intermediates", "stem_out", x)
        for i, layers in enumerate(self.blocks):
            x = DenseBlock(layers, self.growth, self.bn_size * self.growth, self.dtype, name=f"denseblock{i + 1}")(x)
            if i < len(self.blocks) - 1:
                x = Transition(x.shape[-1] // 2, self.dtype, name=f"transition{i + 1}")(x)
            self.sow("intermediates", f"block{i + 1}_out", x)
        return _bn(x, "norm5", self.dtype)


class DenseNet(nn.Module):
    num_classes: int
    growth: int = 48
    blocks: Sequence[int] = (6, 12, 36, 24)
    stem: int = 96
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = Features(self.growth, tuple(self.blocks), self.stem, dtype=self.dtype, name="features")(x.astype(self.dtype))
        x = jnp.mean(nn.relu(x), axis=(1, 2))
        x = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x)
        return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def densenet161(num_classes: int, dtype: Any = jnp.float32) -> DenseNet:
    return DenseNet(num_classes=num_classes, growth=48, blocks=(6, 12, 36, 24), stem=96, dtype=dtype)
