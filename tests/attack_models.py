"""Small generated classifiers and photo helpers shared by the attack and protection tests."""

from __future__ import annotations

import csv

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from PIL import Image

from ppjax.io import to_float01, to_uint8

from .conftest import shared_path


class TinyNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2))(x - 0.5))
        x = nn.relu(nn.Conv(16, (3, 3), strides=(2, 2))(x))
        return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))


#: How often TinyNet's apply was traced (it counts once per trace, not per call).
TRACES = {"n": 0}


class LinearNet(nn.Module):
    """Logits linear in the pixels and large: every image is within reach of a small budget."""

    @nn.compact
    def __call__(self, x):
        x = nn.avg_pool(x - 0.5, (4, 4), (4, 4))
        return nn.Dense(10)(x.reshape(x.shape[0], -1)) * 30.0


class WideLinearNet(nn.Module):
    """A classifier whose weights (4.5 MB) dwarf the program that attacks it."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(365)(x.reshape(x.shape[0], -1) - 0.5)


def protect_uint8(protector, key, photos):
    """A protector on uint8 photos, as files give them: (uint8 output, labels, flags)."""
    q, labels, ok = protector(key, to_float01(photos))
    return to_uint8(q), labels, ok


def imagenet_photos(n: int):
    """The first ``n`` real ImageNet-compatible photos at 256x256: [(id, uint8 RGB, label)]."""
    src = shared_path("imagenet_compatible")
    with open(src / "images.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    out = []
    for r in rows:
        rgb = np.asarray(Image.open(src / "images" / f"{r['ImageId']}.png").convert("RGB").resize((256, 256), Image.BICUBIC))
        out.append((r["ImageId"], rgb, int(r["TrueLabel"]) - 1))  # the CSV counts classes from 1
    return out
