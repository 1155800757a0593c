"""The ConvNet of DatasetCondensation (DC/DSA/DM/MTT's default evaluation network)."""

from __future__ import annotations

import torch
from torch import nn

from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError

NORMS = ("instance", "batch", "none")
POOLS = ("avg", "max", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":  # affine instance norm, as the reference 'instancenorm'
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class ConvNet(nn.Module):
    """``depth`` blocks of conv3x3(width) -> norm -> ReLU -> pool, then one linear layer.

    A 28x28 input is padded by 3 in the first conv, as the reference does, so feature maps
    are 32x32 and the architecture matches the CIFAR one.
    """

    def __init__(self, spec: DataSpec, width: int = 128, depth: int = 3, norm: str = "instance",
                 pooling: str = "avg") -> None:
        super().__init__()
        if norm not in NORMS or pooling not in POOLS:
            raise DatafreeError(f"ConvNet: norm must be one of {NORMS}, pooling one of {POOLS}")
        layers: list[nn.Module] = []
        channels, size = spec.channels, spec.height
        for i in range(depth):
            pad = 3 if (i == 0 and spec.height == 28) else 1
            layers += [nn.Conv2d(channels, width, 3, padding=pad), _norm(norm, width), nn.ReLU(inplace=True)]
            size = size + 2 * pad - 2
            if pooling != "none":
                layers.append(nn.AvgPool2d(2) if pooling == "avg" else nn.MaxPool2d(2))
                size //= 2
            channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels * size * size, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
