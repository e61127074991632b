"""ResNet50, ResNet18 and the Places365 WideResNet18 in Flax, parameter tree mirroring torchvision's state_dict names.

``layer1.0.conv1.weight`` in PyTorch is ``params/layer1/0/conv1/kernel`` here, ``bn1.running_mean``
is ``batch_stats/bn1/mean``; see :mod:`ppjax.export.torch_to_flax` for the full rule. The stride of
each bottleneck sits on its 3x3 convolution (torchvision's layout, which the official Places365
checkpoint was trained with). BatchNorm always uses its running statistics: ppjax never trains.
ResNet18 uses basic blocks (two 3x3 convolutions); the Places365 "WideResNet18" is ResNet18 without
the stem's max pool, so its feature maps are twice as wide and high (CSAIL's ``wideresnet.py``).

Inputs are *normalised* NHWC float arrays; pixel-space wrappers live in :mod:`ppjax.models`.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
from flax.traverse_util import flatten_dict, unflatten_dict

from ppjax.models.layers import Conv, Ghost, at_block, batch_norm, max_pool_3x3_s2, residual_sum

_BN_EPS = 1e-5  # torch.nn.BatchNorm2d default


def _conv_bn(x, features: int, kernel: int, stride: int, conv_name: str, bn_name: str, fused: bool, dtype: Any):
    """Convolution then inference BatchNorm; with ``fused`` one convolution with a bias instead."""
    pad = kernel // 2
    x = Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=fused,
        dtype=dtype,
        name=conv_name,
    )(x)
    if fused:
        return x
    return batch_norm(x, bn_name, _BN_EPS, dtype)


class Downsample(nn.Module):
    """torchvision's ``downsample`` Sequential: 1x1 strided conv (``0``) then BatchNorm (``1``)."""

    features: int
    stride: int
    fused: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        return _conv_bn(x, self.features, 1, self.stride, "0", "1", self.fused, self.dtype)


class Bottleneck(nn.Module):
    planes: int
    stride: int = 1
    downsample: bool = False
    fused: bool = False
    dtype: Any = jnp.float32
    skip_gradient: float = 1.0  # SGM's gamma on the residual branch (backward only; see layers.skip_gradient)

    expansion = 4

    @nn.compact
    def __call__(self, x, ghost: Ghost | None = None):
        identity = x
        f, dt = self.fused, self.dtype
        out = nn.relu(_conv_bn(x, self.planes, 1, 1, "conv1", "bn1", f, dt))
        out = nn.relu(_conv_bn(out, self.planes, 3, self.stride, "conv2", "bn2", f, dt))
        out = _conv_bn(out, self.planes * self.expansion, 1, 1, "conv3", "bn3", f, dt)
        if self.downsample:
            identity = Downsample(self.planes * self.expansion, self.stride, f, dt, name="downsample")(x)
        return nn.relu(residual_sum(identity, out, self.skip_gradient, ghost))


class BasicBlock(nn.Module):
    """torchvision's (and CSAIL's ``wideresnet.py``) basic block: two 3x3 convolutions, stride on the first."""

    planes: int
    stride: int = 1
    downsample: bool = False
    fused: bool = False
    dtype: Any = jnp.float32
    skip_gradient: float = 1.0

    expansion = 1

    @nn.compact
    def __call__(self, x, ghost: Ghost | None = None):
        f, dt = self.fused, self.dtype
        out = nn.relu(_conv_bn(x, self.planes, 3, self.stride, "conv1", "bn1", f, dt))
        out = _conv_bn(out, self.planes, 3, 1, "conv2", "bn2", f, dt)
        identity = Downsample(self.planes, self.stride, f, dt, name="downsample")(x) if self.downsample else x
        return nn.relu(residual_sum(identity, out, self.skip_gradient, ghost))


BLOCKS = {"bottleneck": Bottleneck, "basic": BasicBlock}


class ResLayer(nn.Module):
    """One of torchvision's ``layerN`` Sequentials; blocks are named ``0``, ``1``, ..."""

    planes: int
    blocks: int
    stride: int
    fused: bool = False
    dtype: Any = jnp.float32
    block: str = "bottleneck"
    skip_gradient: float = 1.0

    @nn.compact
    def __call__(self, x, ghost: Ghost | None = None):
        block = BLOCKS[self.block]
        needs_projection = self.stride != 1 or x.shape[-1] != self.planes * block.expansion
        x = block(self.planes, self.stride, needs_projection, self.fused, self.dtype, self.skip_gradient, name="0")(x, at_block(ghost, 0))
        for i in range(1, self.blocks):
            x = block(self.planes, 1, False, self.fused, self.dtype, self.skip_gradient, name=str(i))(x, at_block(ghost, i))
        return x


class ResNet(nn.Module):
    """torchvision ResNet with ``block`` blocks (``bottleneck`` or ``basic``); ``maxpool`` False drops
    the stem's max pool (the Places365 WideResNet18).

    Call with normalised NHWC input of shape (N, H, W, 3); returns float32 logits (N, num_classes).
    Stage outputs are sown into the ``intermediates`` collection (``stem_out``, ``layer1_out``..``layer4_out``,
    ``pooled``) for parity tests; they cost nothing unless that collection is made mutable.
    """

    num_classes: int
    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    fused: bool = False
    dtype: Any = jnp.float32
    block: str = "bottleneck"
    maxpool: bool = True
    #: SGM's gamma on every residual branch, backward only (1: the true gradient).
    skip_gradient: float = 1.0

    @nn.compact
    def __call__(self, x, ghost: Ghost | None = None):
        """``ghost``: the skip erosion of a ghost network (:class:`~ppjax.models.layers.Ghost`), None: the network itself."""
        x = x.astype(self.dtype)
        x = nn.relu(_conv_bn(x, 64, 7, 2, "conv1", "bn1", self.fused, self.dtype))
        if self.maxpool:
            x = max_pool_3x3_s2(x)
        self.sow("intermediates", "stem_out", x)
        for i, blocks in enumerate(self.stage_sizes):
            name = f"layer{i + 1}"
            x = ResLayer(64 * 2**i, blocks, 1 if i == 0 else 2, self.fused, self.dtype, self.block, self.skip_gradient, name=name)(x, at_block(ghost, i))
            self.sow("intermediates", f"{name}_out", x)
        x = jnp.mean(x, axis=(1, 2))
        self.sow("intermediates", "pooled", x)
        x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
        return x.astype(jnp.promote_types(x.dtype, jnp.float32))  # float32 logits from bfloat16 compute


def resnet50(num_classes: int, fused: bool = False, dtype: Any = jnp.float32) -> ResNet:
    return ResNet(num_classes=num_classes, stage_sizes=(3, 4, 6, 3), fused=fused, dtype=dtype)


def resnet18(num_classes: int, fused: bool = False, dtype: Any = jnp.float32, maxpool: bool = True) -> ResNet:
    """ResNet18; ``maxpool=False`` is the Places365 WideResNet18."""
    return ResNet(num_classes=num_classes, stage_sizes=(2, 2, 2, 2), fused=fused, dtype=dtype, block="basic", maxpool=maxpool)


def fuse_batchnorm(variables: dict) -> dict:
    """Variables of the ``fused=True`` module from those of the plain one.

    Inference BatchNorm is an affine map per channel, so it folds exactly into the preceding
    convolution: kernel * s and bias beta - mean * s with s = gamma / sqrt(var + eps). This removes
    one full read and write of every activation per layer, forward and backward.
    """
    params = flatten_dict(variables["params"], sep="/")
    stats = flatten_dict(variables["batch_stats"], sep="/")
    fused = {}
    for key, kernel in params.items():
        if not key.endswith("/kernel") or key == "fc/kernel":
            continue
        conv = key[: -len("/kernel")]
        bn = _BN_OF_CONV.sub(lambda m: "bn" + m.group(1) if m.group(1) else "1", conv)
        s = params[f"{bn}/scale"] / jnp.sqrt(stats[f"{bn}/var"] + _BN_EPS)
        fused[f"{conv}/kernel"] = kernel * s
        fused[f"{conv}/bias"] = params[f"{bn}/bias"] - stats[f"{bn}/mean"] * s
    fused["fc/kernel"], fused["fc/bias"] = params["fc/kernel"], params["fc/bias"]
    return {"params": unflatten_dict(fused, sep="/")}


# conv1 -> bn1, layer1/0/conv2 -> layer1/0/bn2, layer1/0/downsample/0 -> layer1/0/downsample/1
_BN_OF_CONV = re.compile(r"(?:conv(\d)|(?<=downsample/)0)$")
