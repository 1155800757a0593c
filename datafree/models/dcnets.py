"""The extra evaluation networks of DatasetCondensation's cross-architecture tests.

MLP, the small AlexNet and VGG-11 of the condensation literature (DC/DSA/DM/MTT), sized from a
DataSpec. Like :class:`~datafree.models.convnet.ConvNet`, 28x28 inputs are padded in the first
conv so the convolutional nets see the same feature-map sizes as on 32x32 inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.models.convnet import NORMS, _norm

VGG11_CFG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def _conv_out(size: int, kernel: int, pad: int) -> int:
    return size + 2 * pad - kernel + 1


class MLP(nn.Module):
    """Flatten -> linear 128 -> ReLU -> linear 128 -> ReLU -> linear to classes."""

    def __init__(self, spec: DataSpec, hidden: int = 128) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Flatten(),
            nn.Linear(spec.channels * spec.height * spec.width, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(hidden, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class AlexNetDC(nn.Module):
    """The small AlexNet of the condensation papers: five convs (128-192-256-192-192), three
    max-pools, one linear layer. 28x28 inputs get padding 4 in the first conv (a 32x32 map)."""

    def __init__(self, spec: DataSpec) -> None:
        super().__init__()
        pad = 4 if spec.height == 28 else 2
        self.features = nn.Sequential(
            nn.Conv2d(spec.channels, 128, 5, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(128, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(192, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 192, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        # Later convs preserve size; only the first conv and the three pools change it.
        h, w = (_conv_out(s, 5, pad) // 8 for s in (spec.height, spec.width))
        if h < 1 or w < 1:
            raise DatafreeError(f"alexnet_dc: input {spec.height}x{spec.width} is too small")
        self.classifier = nn.Linear(192 * h * w, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class VGG(nn.Module):
    """VGG (conv3x3 -> norm -> ReLU blocks, max-pools at 'M') with one linear classifier.

    ``norm`` is one of ``instance`` (GroupNorm(c, c), the condensation default), ``batch`` or
    ``none``. A 28x28 input is padded by 3 in the first conv so the feature map is 32x32.
    """

    def __init__(self, spec: DataSpec, cfg: tuple[int | str, ...] = VGG11_CFG, norm: str = "instance") -> None:
        super().__init__()
        if norm not in NORMS:
            raise DatafreeError(f"VGG: norm must be one of {NORMS}")
        layers: list[nn.Module] = []
        channels, h, w = spec.channels, spec.height, spec.width
        for i, v in enumerate(cfg):
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
                continue
            pad = 3 if (i == 0 and spec.height == 28) else 1
            layers += [nn.Conv2d(channels, int(v), 3, padding=pad), _norm(norm, int(v)), nn.ReLU(inplace=True)]
            h, w = _conv_out(h, 3, pad), _conv_out(w, 3, pad)
            channels = int(v)
        if h < 1 or w < 1:
            raise DatafreeError(f"vgg: input {spec.height}x{spec.width} is too small")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels * h * w, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def mlp(spec: DataSpec, hidden: int = 128) -> MLP:
    return MLP(spec, hidden)


def alexnet_dc(spec: DataSpec) -> AlexNetDC:
    return AlexNetDC(spec)


def vgg11(spec: DataSpec, norm: str = "instance") -> VGG:
    return VGG(spec, VGG11_CFG, norm)
