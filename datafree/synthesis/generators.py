"""Generators that map noise (and optionally a class) to images in the teacher's input space."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from datafree.data.spec import DataSpec

OUTPUTS = ("sigmoid", "tanh-bn")


class Generator(nn.Module):
    """DCGAN-style generator (as in DAFL / Fast-DFKD), sized from the DataSpec.

    ``z -> linear -> (2*ngf, H/4, W/4) -> [upsample, conv, BN, LeakyReLU] x 2 -> conv -> head``.
    Two output heads, each the one its papers use:

    - ``sigmoid`` (CMI, Fast-DFKD): pixels in [0, 1], normalised with the spec's mean/std, so the
      output lives in exactly the space the teacher was trained on.
    - ``tanh-bn`` (DAFL, DFAD, ZSKT): tanh, then a BatchNorm without affine parameters. Every batch
      then has zero mean and unit variance per channel -- the statistics of normalised real data --
      which keeps the generator from drifting to blank or saturated images when the teacher has no
      BatchNorm statistics to match.

    With ``conditional`` the noise is multiplied by a learned class embedding.
    """

    def __init__(self, spec: DataSpec, nz: int = 256, ngf: int = 64, conditional: bool = False,
                 output: str = "sigmoid") -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"unknown generator output {output!r} ({', '.join(OUTPUTS)})")
        self.spec, self.nz, self.conditional = spec, nz, conditional
        self.init_h, self.init_w = -(-spec.height // 4), -(-spec.width // 4)
        self.project = nn.Linear(nz, 2 * ngf * self.init_h * self.init_w)
        self.embed = nn.Embedding(spec.num_classes, nz) if conditional else None
        self.body = nn.Sequential(
            nn.BatchNorm2d(2 * ngf),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * ngf, 2 * ngf, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * ngf), nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * ngf, ngf, 3, 1, 1, bias=False), nn.BatchNorm2d(ngf), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ngf, spec.channels, 3, 1, 1),
        )
        self.out_norm = nn.BatchNorm2d(spec.channels, affine=False) if output == "tanh-bn" else None
        mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
        std = torch.tensor(spec.std).view(1, -1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional generator needs class labels")
            z = z * self.embed(y)
        h = self.project(z).view(len(z), -1, self.init_h, self.init_w)
        x = self.body(h)[..., : self.spec.height, : self.spec.width]
        if self.out_norm is not None:
            return self.out_norm(torch.tanh(x))
        return (torch.sigmoid(x) - self.mean) / self.std


class PixelGenerator(nn.Module):
    """Directly optimised images (DeepInversion): the 'generator' is the batch itself.

    ``forward`` ignores the noise and returns the learnable images in normalised space. With
    ``scale > 1`` the learnable tensor is ``scale`` times coarser and is upsampled bilinearly, a
    smoothness prior: without BatchNorm statistics to match, full-resolution pixels turn into
    high-frequency patterns that the teacher labels confidently but that teach a student little.
    Images start as uniform noise in [0, 1] pixel space. After every optimiser step the engine
    calls :meth:`clamp_`, which keeps each pixel inside that range, as DeepInversion does:
    unclamped pixels drift far outside it and earn the teacher's confidence with extreme values.
    """

    def __init__(self, spec: DataSpec, batch_size: int, generator: torch.Generator | None = None,
                 scale: int = 1) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError("pixel scale must be >= 1")
        self.spec, self.scale = spec, scale
        self.nz = 0
        self.conditional = False
        size = (-(-spec.height // scale), -(-spec.width // scale))
        self.register_buffer("low", spec.normalize(torch.zeros(1, spec.channels, 1, 1)), persistent=False)
        self.register_buffer("high", spec.normalize(torch.ones(1, spec.channels, 1, 1)), persistent=False)
        uniform = torch.rand(batch_size, spec.channels, *size, generator=generator)
        self.images = nn.Parameter(self.low + uniform * (self.high - self.low))

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project the images back into the valid pixel range (in place)."""
        self.images.copy_(torch.maximum(torch.minimum(self.images, self.high), self.low))

    def forward(self, z: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.scale == 1:
            return self.images
        return F.interpolate(self.images, size=(self.spec.height, self.spec.width), mode="bilinear", align_corners=False)
