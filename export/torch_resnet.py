"""torchvision's ResNet50 and ResNet18, and CSAIL's WideResNet18, written out in plain PyTorch, for
parity tests, benchmarks and ONNX export.

torchvision cannot be installed beside the CPU torch build these machines use, so this module
reproduces ``torchvision.models.resnet50``/``resnet18`` (module names, strides on the 3x3
convolutions, BatchNorm eps 1e-5): ``load_state_dict(strict=True)`` accepts the official Places365
state_dicts unchanged. The WideResNet18 follows CSAIL's ``wideresnet.py`` as its demo runs it: basic
blocks, no max pool after the stem, and a 14x14 average pool of stride 1 before the classifier, so
it takes 224x224 inputs only.
"""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """``block`` blocks in four stages; ``wide`` is CSAIL's WideResNet (no stem max pool, a fixed
    14x14 average pool of stride 1, which leaves a single position only for 224x224 inputs)."""

    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000, block=Bottleneck, wide: bool = False):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if wide else nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AvgPool2d(14, stride=1) if wide else nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(num_classes: int = 1000) -> ResNet:
    return ResNet((3, 4, 6, 3), num_classes)


def resnet18(num_classes: int = 1000, wide: bool = False) -> ResNet:
    return ResNet((2, 2, 2, 2), num_classes, BasicBlock, wide)


def places365_resnet50() -> ResNet:
    """The Places365-Standard ResNet50: torchvision's ResNet50 with 365 classes."""
    return resnet50(365)


def places365_resnet18() -> ResNet:
    """The Places365-Standard ResNet18: torchvision's ResNet18 with 365 classes."""
    return resnet18(365)


def places365_wideresnet18() -> ResNet:
    """The Places365-Standard WideResNet18 (CSAIL's ``wideresnet.resnet18(num_classes=365)``)."""
    return resnet18(365, wide=True)
