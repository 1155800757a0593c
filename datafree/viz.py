"""Image grids (PNG) of what was synthesized or condensed, written atomically."""

from __future__ import annotations

from pathlib import Path

import torch

from datafree.data.spec import DataSpec
from datafree.io import atomic_path


def save_images(path: str | Path, images: torch.Tensor, spec: DataSpec, nrow: int = 8) -> None:
    """A grid of normalised ``images``, shown in pixel space."""
    from torchvision.utils import save_image

    with atomic_path(path) as tmp:
        save_image(spec.denormalize(images.detach().cpu()).clamp(0, 1), str(tmp), nrow=nrow, padding=1,
                   pad_value=0.5, format="png")


def save_class_grid(path: str | Path, images: torch.Tensor, labels: torch.Tensor, spec: DataSpec,
                    per_class: int = 8) -> None:
    """One row per class with up to ``per_class`` of its images; missing slots stay white."""
    rows = []
    images, labels = images.detach().cpu(), labels.detach().cpu()
    white = spec.normalize(torch.ones(1, *spec.shape))
    for c in range(spec.num_classes):
        picked = images[labels == c][:per_class]
        rows.append(torch.cat([picked, white.expand(per_class - len(picked), *spec.shape)]))
    save_images(path, torch.cat(rows), spec, nrow=per_class)
