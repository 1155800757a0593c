"""A small MobileNetV2 (Sandler et al. 2018) for 28x28 and 32x32 inputs: depthwise convolutions + BatchNorm.

Another BatchNorm family beside the ResNets, with a different layer shape (inverted residuals:
1x1 expand, 3x3 depthwise, 1x1 linear projection), so a data-free recipe can be checked on a
teacher it was not tuned on. The stem keeps full resolution, as CIFAR variants do.
"""

from __future__ import annotations

import torch
from torch import nn

from datafree.data.spec import DataSpec

# (expansion, output channels, blocks, stride of the first block) at width 1
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 2, 2))


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(c_out)]
    return layers + [nn.ReLU6(inplace=True)] if relu else layers


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        expand = _conv_bn(c_in, hidden, 1) if expansion != 1 else []
        self.block = nn.Sequential(*expand, *_conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                   *_conv_bn(hidden, c_out, 1, relu=False))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    """Stem conv3x3 -> inverted-residual stages -> conv1x1 -> global average pool -> linear.

    ``width`` scales every channel count (0.5 halves them).
    """

    def __init__(self, spec: DataSpec, width: float = 1.0) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return max(8, int(round(c * width / 8)) * 8) if width >= 1 else max(4, int(round(c * width)))

        c = ch(32)
        layers: list[nn.Module] = [*_conv_bn(spec.channels, c, 3)]
        for expansion, out, blocks, stride in STAGES:
            for i in range(blocks):
                layers.append(InvertedResidual(c, ch(out), stride if i == 0 else 1, expansion))
                c = ch(out)
        last = ch(256)
        layers += _conv_bn(c, last, 1)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def mobilenetv2(spec: DataSpec, width: float = 1.0) -> MobileNetV2:
    return MobileNetV2(spec, width)
