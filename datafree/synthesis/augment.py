"""Differentiable augmentation for synthesis: random resized crop and horizontal flip.

Written in pure torch (affine grid + bilinear sampling; every parameter drawn from the engine's
``torch.Generator``, so synthesis is reproducible and resumable) rather than with kornia, because
kornia is much slower here on the CPU: ``python -m benchmarks.kornia_augment`` measured its
RandomResizedCrop + RandomHorizontalFlip at about 3x this function per forward + backward of 128
Fashion-MNIST images (29 against 9 ms), which made a whole DeepInversion generator step on
LeNet-5-BN 14% slower in the published run and 8-43% across four runs on the loaded 2-core
machine (benchmarks/results/kornia_augment.md). Synthesis is the dominant cost of the data-free
pipeline on a CPU, so the hand-written version stays (docs/restructuring.md, "kornia").
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def crop_params(b: int, generator: torch.Generator, scale: tuple[float, float] = (0.5, 1.0),
                flip: bool = True) -> torch.Tensor:
    """``(b, 4)`` crop parameters ``(x scale, y scale, x centre, y centre)`` in [-1, 1] grid units.

    A square crop of a random area fraction in ``scale`` at a random position; a flipped crop has a
    negative x scale. Stored as they are, they replay the exact crop later (FKD-style relabelling).
    """
    area = torch.empty(b).uniform_(scale[0], scale[1], generator=generator)
    side = area.sqrt()  # square crops: side as a fraction of the image
    cx = (torch.rand(b, generator=generator) * 2 - 1) * (1 - side)
    cy = (torch.rand(b, generator=generator) * 2 - 1) * (1 - side)
    sx = side.clone()
    if flip:
        sx = torch.where(torch.rand(b, generator=generator) < 0.5, -sx, sx)
    return torch.stack([sx, side, cx, cy], 1)


def apply_crops(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Each image of ``x`` zoomed into its crop of ``params`` (see :func:`crop_params`), bilinearly
    and differentiably: gradients flow to ``x``."""
    p = params.to(x.device, x.dtype)
    theta = torch.zeros(len(x), 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_resized_crop_flip(x: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.5, 1.0),
                             flip: bool = True) -> torch.Tensor:
    """Per-sample zoom into a random area fraction in ``scale`` at a random position, plus flips.

    Gradients flow to ``x`` (bilinear sampling), so a generator learns through it.
    """
    return apply_crops(x, crop_params(len(x), generator, scale, flip))
