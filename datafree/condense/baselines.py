"""Baselines every condensation method is compared with, under the same protocol.

``random``: ``ipc`` random real images per class. ``herding`` (Welling, 2009): per class,
greedily pick the images whose running mean embedding stays closest to the class mean; the
embedding is the teacher's penultimate layer when a teacher is given, else a fresh ``--net``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from datafree.condense.base import Condenser
from datafree.condense.config import CondenseConfig
from datafree.condense.real import ClassPool
from datafree.hooks import embed_batches


def herding_indices(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``k`` rows of ``features`` chosen greedily so their mean tracks the full mean."""
    mean = features.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mean)
    available = torch.ones(len(features), dtype=torch.bool)
    for step in range(1, min(k, len(features)) + 1):
        # distance of the mean after adding each candidate, all candidates at once
        dist = ((running + features) / step - mean).norm(dim=1)
        dist[~available] = float("inf")
        i = int(dist.argmin())
        chosen.append(i)
        available[i] = False
        running += features[i]
    return torch.tensor(chosen, dtype=torch.long)


class RandomSubset(Condenser):
    """The initial random real draw is the result: no iterations."""

    def step(self) -> dict[str, float]:
        return {}


@dataclass
class HerdingConfig(CondenseConfig):
    """Herding's embedding: the teacher's penultimate layer if a teacher is given, else a fresh ``net``."""

    herding_net: str = "teacher"


class Herding(Condenser):
    config_class = HerdingConfig
    def initial_images(self) -> torch.Tensor:
        pool: ClassPool = self.pool  # type: ignore[assignment]
        net = self.teacher if self.teacher is not None and self.config.herding_net == "teacher" else self.fresh_net()
        picks = []
        for c in range(self.spec.num_classes):  # one greedy selection per class
            images = pool.of_class(c)
            picks.append(images[herding_indices(embed_batches(net, images, 1024).cpu(), self.config.ipc)])
        return torch.cat(picks)

    def step(self) -> dict[str, float]:
        return {}
