"""MobileNetV2 1.0 (ImageNet) in Flax: the float network of Google's 8-bit TensorFlow Lite model.

A second trained family beside EfficientNet-Lite: MobileNetV2's inverted residuals with linear
bottlenecks (Sandler et al. 2018), no squeeze-and-excitation, ReLU6, width 1.0, native 224 pixels.
The weights are read back from ``tf2_mobilenet_v2_1.0_224_ptq.tflite`` (google-coral/test_data,
Apache-2.0; :mod:`ppjax.export.convert_mobilenet_v2`), where batch norm is already folded into each
convolution's kernel and bias: int8 kernels with a scale per output channel, int32 biases with
their own scales, dequantised to float32. So the port is the network the 8-bit model approximates,
not its 8-bit arithmetic: it agrees with the TFLite interpreter on top-1, not to 1e-4 (the 8-bit
model rounds every activation).

Layer names follow the TFLite tensors' (TF-Slim's): ``Conv2d_0_0``, ``expanded_conv_1`` (no
expansion) to ``expanded_conv_17`` with ``expand``, ``depthwise`` and ``project`` convolutions,
``Conv2d_18_1`` and the classifier ``Conv2d_1x1_output`` (1001 outputs: index 0 is "background",
dropped here, so that output k is ImageNet class k like the other ImageNet models').
Convolutions use TensorFlow 'same' padding fixed for the native 224-pixel side.

Input: (N, H, W, 3) pixels, normalised as the 8-bit model's input is, (p - 127) / 127.5 for p in
0..255; output (N, 1000) float32 logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ppjax.models import Model, ModelSpec, abstract_shapes, load_classifier, normalised_apply
from ppjax.models.layers import Conv, Ghost, at_block, relu6, residual_sum, tf_same_pads

#: (expansion, output channels, repeats, first stride) of the blocks after ``expanded_conv_1``.
BLOCKS = ((6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

_NATIVE = 224


def _conv(x, features: int, kernel: int, stride: int, size: int, name: str, dtype: Any, groups: int = 1):
    pad = tf_same_pads(size, kernel, stride)
    return Conv(features, (kernel, kernel), (stride, stride), (pad, pad), feature_group_count=groups, use_bias=True, dtype=dtype, name=name)(x)


class InvertedResidual(nn.Module):
    """Expand (1x1, ReLU6; absent when ``expand`` is 1), depthwise 3x3 (ReLU6), project (1x1,
    linear), and the input added back when the shapes allow."""

    expand: int
    in_channels: int
    out_channels: int
    stride: int
    size: int  # the side the block's input has at the native size (for the fixed padding)
    dtype: Any = jnp.float32
    skip_gradient: float = 1.0  # SGM's gamma on the residual branch (backward only; see layers.skip_gradient)

    @nn.compact
    def __call__(self, inputs, ghost: Ghost | None = None):
        x = inputs
        hidden = self.in_channels * self.expand
        if self.expand != 1:
            x = relu6(_conv(x, hidden, 1, 1, self.size, "expand", self.dtype))
        x = relu6(_conv(x, hidden, 3, self.stride, self.size, "depthwise", self.dtype, groups=hidden))
        x = _conv(x, self.out_channels, 1, 1, -(-self.size // self.stride), "project", self.dtype)
        if self.stride == 1 and self.in_channels == self.out_channels:
            x = residual_sum(inputs, x, self.skip_gradient, ghost)
        return x


class MobileNetV2(nn.Module):
    dtype: Any = jnp.float32
    #: SGM's gamma on every residual branch, backward only (1: the true gradient).
    skip_gradient: float = 1.0

    @nn.compact
    def __call__(self, x, ghost: Ghost | None = None):
        """``ghost``: the skip erosion of a ghost network (:class:`~ppjax.models.layers.Ghost`), None: the network itself."""
        x = x.astype(self.dtype)
        size = _NATIVE
        x = relu6(_conv(x, 32, 3, 2, size, "Conv2d_0_0", self.dtype))
        size = -(-size // 2)
        x = InvertedResidual(1, 32, 16, 1, size, self.dtype, self.skip_gradient, name="expanded_conv_1")(x)
        channels, index = 16, 2
        for expand, out, repeats, stride in BLOCKS:
            for r in range(repeats):
                s = stride if r == 0 else 1
                x = InvertedResidual(expand, channels, out, s, size, self.dtype, self.skip_gradient, name=f"expanded_conv_{index}")(x, at_block(ghost, index))
                size, channels, index = -(-size // s), out, index + 1
        x = relu6(_conv(x, 1280, 1, 1, size, "Conv2d_18_1", self.dtype))
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(1001, dtype=self.dtype, name="Conv2d_1x1_output")(x)[:, 1:]
        return x.astype(jnp.promote_types(x.dtype, jnp.float32))


SPEC = ModelSpec(
    name="mobilenet-v2",
    description="MobileNetV2 1.0 (ImageNet, 1000 classes), float network of Google's 8-bit TFLite model",
    num_classes=1000,
    native_size=_NATIVE,
    mean=(127.0 / 255.0,) * 3,
    std=(127.5 / 255.0,) * 3,
)


def build(dtype=jnp.float32) -> MobileNetV2:
    return MobileNetV2(dtype)


def expected_shapes() -> dict[str, tuple[int, ...]]:
    return abstract_shapes(build(), SPEC.native_size)


def make_apply(module: MobileNetV2 | None = None):
    """Pure ``apply(variables, x01) -> logits`` with the 8-bit model's input normalisation inside."""
    return normalised_apply(module or build(), SPEC)


def load(model_dir: str | Path, dtype=jnp.float32) -> Model:
    """Load the converted model from a store folder (``weights.safetensors`` + ``labels.txt``)."""
    path = Path(model_dir) / "labels.txt"
    labels = tuple(path.read_text(encoding="utf-8").splitlines())
    if len(labels) != SPEC.num_classes:
        raise ValueError(f"{path}: expected {SPEC.num_classes} class names, found {len(labels)}")
    return load_classifier(model_dir, SPEC, build(dtype), labels)
