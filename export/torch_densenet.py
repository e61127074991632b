"""torchvision's DenseNet161 written out in plain PyTorch, for parity tests and ONNX export.

Module names follow today's torchvision (``features.denseblock1.denselayer1.norm1``...), so
``load_state_dict(strict=True)`` takes the official Places365 state_dict once
:func:`ppjax.export.convert_places365.official_names` has joined its PyTorch 0.2 layer names.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class DenseLayer(nn.Module):
    def __init__(self, channels: int, growth: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(channels, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(self.relu1(self.norm1(x)))
        y = self.conv2(self.relu2(self.norm2(y)))
        return torch.cat([x, y], 1)


class Transition(nn.Sequential):
    def __init__(self, channels: int, out: int):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(channels))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(channels, out, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(2, stride=2))


class DenseNet(nn.Module):
    def __init__(self, growth: int = 48, blocks=(6, 12, 36, 24), stem: int = 96, bn_size: int = 4, num_classes: int = 1000):
        super().__init__()
        layers = OrderedDict(
            conv0=nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False),
            norm0=nn.BatchNorm2d(stem),
            relu0=nn.ReLU(inplace=True),
            pool0=nn.MaxPool2d(3, stride=2, padding=1),
        )
        channels = stem
        for i, n in enumerate(blocks):
            block = nn.Sequential()
            for j in range(n):
                block.add_module(f"denselayer{j + 1}", DenseLayer(channels + j * growth, growth, bn_size))
            layers[f"denseblock{i + 1}"] = block
            channels += n * growth
            if i < len(blocks) - 1:
                layers[f"transition{i + 1}"] = Transition(channels, channels // 2)
                channels //= 2
        layers["norm5"] = nn.BatchNorm2d(channels)
        self.features = nn.Sequential(layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = F.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def places365_densenet161() -> DenseNet:
    """The Places365-Standard DenseNet161: torchvision's DenseNet161 with 365 classes."""
    return DenseNet(48, (6, 12, 36, 24), 96, 4, 365)
