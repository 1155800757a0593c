"""LeNet-5 and LeNet-5-half, the MNIST-family teacher/student pair of DAFL, DFAD and ZSKD."""

from __future__ import annotations

import torch
from torch import nn

from datafree.data.spec import DataSpec


class LeNet5(nn.Module):
    """LeNet-5 (ReLU, max-pool) as in DAFL: conv 6-16-120, fc 84, classifier.

    Inputs smaller than 32x32 are zero-padded by the first conv (28x28 MNIST sees the classic
    32x32 field); larger inputs are pooled to the 5x5 map the third conv expects.
    ``width`` scales every layer (0.5 gives LeNet-5-half). ``batchnorm`` adds a BatchNorm after
    every convolution and the hidden linear layer: the same network with the running statistics
    that DeepInversion-style synthesis matches (``lenet5_bn``).
    """

    def __init__(self, spec: DataSpec, width: float = 1.0, batchnorm: bool = False) -> None:
        super().__init__()
        c1, c2, c3, f1 = (max(1, round(c * width)) for c in (6, 16, 120, 84))
        pad = max(0, (32 - min(spec.height, spec.width)) // 2)

        def block(conv: nn.Conv2d, *rest: nn.Module) -> list[nn.Module]:
            # without batchnorm the layer indices (and so the state_dict keys) are LeNet-5's own
            return [conv, *([nn.BatchNorm2d(conv.out_channels)] if batchnorm else []), nn.ReLU(inplace=True), *rest]

        self.features = nn.Sequential(
            *block(nn.Conv2d(spec.channels, c1, 5, padding=pad), nn.MaxPool2d(2)),
            *block(nn.Conv2d(c1, c2, 5), nn.MaxPool2d(2)),
            nn.AdaptiveMaxPool2d(5),
            *block(nn.Conv2d(c2, c3, 5)),
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c3, f1), *([nn.BatchNorm1d(f1)] if batchnorm else []),
                                nn.ReLU(inplace=True))
        self.classifier = nn.Linear(f1, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.fc(self.features(x)))


def lenet5(spec: DataSpec) -> LeNet5:
    return LeNet5(spec, 1.0)


def lenet5_half(spec: DataSpec) -> LeNet5:
    return LeNet5(spec, 0.5)


def lenet5_bn(spec: DataSpec) -> LeNet5:
    return LeNet5(spec, 1.0, batchnorm=True)
