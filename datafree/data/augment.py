"""Vectorised training augmentation on batches (no per-image Python loop)."""

from __future__ import annotations

import torch
from torch import nn


class RandomCropFlip(nn.Module):
    """Random translation by up to ``padding`` pixels (zero padding) and horizontal flips.

    Every draw comes from the ``generator`` passed to :meth:`forward`, so augmentation is
    reproducible and resumable. Works in normalised space: padding uses the value a black
    pixel maps to only if ``fill`` is given, else 0 (the dataset mean), as torchvision does
    after ``Normalize``.
    """

    def __init__(self, padding: int = 2, flip: bool = True, fill: float = 0.0) -> None:
        super().__init__()
        self.padding, self.flip, self.fill = padding, flip, fill

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        if self.flip:
            flip = torch.rand(b, generator=generator) < 0.5
            x = torch.where(flip.to(x.device).view(b, 1, 1, 1), x.flip(3), x)
        p = self.padding
        if p > 0:
            shifts = torch.randint(0, 2 * p + 1, (2, b), generator=generator).to(x.device)
            padded = nn.functional.pad(x, (p, p, p, p), value=self.fill)
            rows = shifts[0].view(b, 1) + torch.arange(h, device=x.device)
            cols = shifts[1].view(b, 1) + torch.arange(w, device=x.device)
            batch = torch.arange(b, device=x.device).view(b, 1, 1)
            # advanced indices around a slice put the indexed dims first: (B, H, W, C)
            x = padded[batch, :, rows.view(b, h, 1), cols.view(b, 1, w)].permute(0, 3, 1, 2).contiguous()
        return x
