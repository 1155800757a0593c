"""Users' own architectures, built through the ``module:callable`` registry syntax (none of them is in the zoo)."""

import torch
from torch import nn


def tiny_net(spec):
    return nn.Sequential(nn.Flatten(), nn.Linear(spec.channels * spec.height * spec.width, spec.num_classes))


class VGGish(nn.Module):
    """A user's teacher as users write them: its own attribute names, VGG-style conv-BN-ReLU blocks with
    max-pooling, ``x.view(n, -1)`` (which fails on channels_last activations) and a ``BatchNorm1d`` in the
    classifier head. Any input of at least 8x8 pixels works (28x28, 32x32, 64x64)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 4) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.MaxPool2d(2))

        self.trunk = nn.Sequential(block(in_channels, width), block(width, 2 * width))
        self.squeeze = nn.AdaptiveAvgPool2d(2)
        self.classifier_head = nn.Sequential(nn.Linear(8 * width, 16), nn.BatchNorm1d(16), nn.ReLU(inplace=True),
                                             nn.Linear(16, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(self.trunk(x))
        return self.classifier_head(x.view(x.size(0), -1))


def build(num_classes: int = 10, in_channels: int = 1) -> VGGish:
    """The issue's ``mymodels:build``: the user's constructor takes the class count and channels, not a DataSpec."""
    return VGGish(num_classes, in_channels)
