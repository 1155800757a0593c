"""ResNets for small images: the CIFAR family (6n+2 layers) and ResNet-18/34 with a 3x3 stem."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.models.convnet import NORMS, _norm


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1, norm: str = "batch") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = _norm(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = _norm(norm, planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), _norm(norm, planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """Stem conv3x3 -> stages of BasicBlocks -> global average pool -> linear classifier.

    ``norm="instance"`` gives the instance-norm ResNet-18 that condensation papers evaluate on.
    """

    def __init__(self, spec: DataSpec, blocks: list[int], widths: list[int], norm: str = "batch") -> None:
        super().__init__()
        if norm not in NORMS:
            raise DatafreeError(f"ResNet: norm must be one of {NORMS}")
        self.conv1 = nn.Conv2d(spec.channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = _norm(norm, widths[0])
        stages, in_planes = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            layer = []
            for j in range(n):
                layer.append(BasicBlock(in_planes, w, 2 if (i > 0 and j == 0) else 1, norm))
                in_planes = w
            stages.append(nn.Sequential(*layer))
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_planes, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return self.classifier(self.pool(self.layers(x)).flatten(1))


def cifar_resnet(spec: DataSpec, depth: int, width: int = 16, norm: str = "batch") -> ResNet:
    """He et al.'s CIFAR ResNet-(6n+2): three stages of widths w, 2w, 4w."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    return ResNet(spec, [n, n, n], [width, 2 * width, 4 * width], norm)


def resnet18(spec: DataSpec, width: int = 64, norm: str = "batch") -> ResNet:
    return ResNet(spec, [2, 2, 2, 2], [width, 2 * width, 4 * width, 8 * width], norm)


def resnet34(spec: DataSpec, width: int = 64, norm: str = "batch") -> ResNet:
    return ResNet(spec, [3, 4, 6, 3], [width, 2 * width, 4 * width, 8 * width], norm)
