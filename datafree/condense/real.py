"""Real training images grouped by class, sampled per class in one vectorised draw."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from datafree.data.loader import iterate_batches
from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError


def dataset_tensors(dataset: Dataset, batch_size: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """All images and labels of a (small) dataset as two tensors, in dataset order."""
    xs, ys = [], []
    for batch in iterate_batches(dataset, batch_size, shuffle=False):
        xs.append(batch[0])
        ys.append(batch[1])
    if not xs:
        raise DatafreeError("the real dataset is empty")
    return torch.cat(xs), torch.cat(ys).long()


class ClassPool:
    """Images sorted by class; :meth:`sample` draws ``n`` per class without replacement.

    Condensation methods compare class-conditional statistics of real and synthetic batches,
    so every iteration needs a same-size batch from each class.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, spec: DataSpec) -> None:
        self.spec = spec
        counts = torch.bincount(labels, minlength=spec.num_classes)
        if len(counts) > spec.num_classes or (counts == 0).any():
            missing = (counts[: spec.num_classes] == 0).nonzero().flatten().tolist()
            raise DatafreeError(f"the real data must have images of every class; classes {missing} have none")
        order = torch.argsort(labels, stable=True)
        self.images, self.labels = images[order], labels[order]
        self.counts = counts
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)[:-1]])

    @classmethod
    def from_dataset(cls, dataset: Dataset, spec: DataSpec) -> ClassPool:
        return cls(*dataset_tensors(dataset), spec)

    def indices(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``(C, n)`` indices into :attr:`images`: ``n`` distinct images of each class (fewer if a class is smaller: repeats)."""
        c, largest = self.spec.num_classes, int(self.counts.max())
        width = max(largest, n)
        keys = torch.rand(c, width, generator=generator)
        keys[torch.arange(width).view(1, -1) >= self.counts.view(-1, 1)] = 2.0  # past a class's end: drawn last
        picks = keys.argsort(1)[:, :n]
        picks = picks % self.counts.view(-1, 1)  # classes smaller than n wrap around
        return picks + self.offsets.view(-1, 1)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``(C, n, *shape)`` real images, ``n`` per class."""
        return self.images[self.indices(n, generator)]

    def of_class(self, c: int) -> torch.Tensor:
        start = int(self.offsets[c])
        return self.images[start: start + int(self.counts[c])]
