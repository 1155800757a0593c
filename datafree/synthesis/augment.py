"""Differentiable augmentation for synthesis: random resized crop and horizontal flip.

Written in pure torch (affine grid + bilinear sampling) rather than with kornia because every
parameter is drawn from an explicit ``torch.Generator``, which makes synthesis reproducible and
resumable; kornia's augmentations draw from the global random state.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def random_resized_crop_flip(x: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.5, 1.0),
                             flip: bool = True) -> torch.Tensor:
    """Per-sample zoom into a random area fraction in ``scale`` at a random position, plus flips.

    Gradients flow to ``x`` (bilinear sampling), so a generator learns through it.
    """
    b = len(x)
    area = torch.empty(b).uniform_(scale[0], scale[1], generator=generator)
    side = area.sqrt()  # square crops: side as a fraction of the image
    cx = (torch.rand(b, generator=generator) * 2 - 1) * (1 - side)
    cy = (torch.rand(b, generator=generator) * 2 - 1) * (1 - side)
    sx = side.clone()
    if flip:
        sx = torch.where(torch.rand(b, generator=generator) < 0.5, -sx, sx)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, side, cy
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
