"""DM (Zhao & Bilen, 2023): match each class's mean embedding under random networks.

No inner loop and no second-order gradients, which makes it the cheapest method. The siamese
augmentation draw is shared by all classes of an iteration (the reference draws one per class);
real and synthetic images still see the same transform.

Speed (docs/condensation.md): almost all the time is the real images' forward pass (2,560 images
at IPC 10, batch_real 256). It runs without a graph, in chunks of ``real_chunk`` images (one
2,560-image batch makes every activation 1.3 GB, which no cache holds), optionally compiled
(``real_compile``: inductor fuses norm, ReLU and pooling; one compilation serves every fresh
network) and under bfloat16 autocast (``real_bf16``). The synthetic images' pass, whose gradient
updates the images, stays eager float32.

Under torchrun every process draws the same network, real batch and augmentation, embeds only
its own classes, and the image gradients are summed (:meth:`Condenser.update_images`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from datafree.condense.base import Condenser
from datafree.condense.config import CondenseConfig, check
from datafree.hooks import embed
from datafree.losses import mean_embedding_distance


@dataclass
class DMConfig(CondenseConfig):
    """DM's speed levers for the real images' (no-graph) forward: chunk size, torch.compile, bfloat16 autocast."""

    real_chunk: int = 256
    real_compile: bool = False
    real_bf16: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check([(self.real_chunk >= 1, "real_chunk must be >= 1")])


class DM(Condenser):
    config_class = DMConfig
    splits_classes = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._embed_real: Callable[[nn.Module, torch.Tensor], torch.Tensor] = (
            torch.compile(embed, dynamic=False) if self.config.real_compile else embed)

    def real_embeddings(self, net: nn.Module, real: torch.Tensor) -> torch.Tensor:
        """Embeddings of the (augmented) real images: no graph, in chunks, optionally compiled and bfloat16."""
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.real_bf16):
            return torch.cat([self._embed_real(net, x) for x in real.split(self.config.real_chunk)]).float()

    def step(self) -> dict[str, float]:
        c, ipc, n = self.spec.num_classes, self.config.ipc, self.config.batch_real
        net = self.fresh_net().train().requires_grad_(False)
        real, syn = self.real_batch(n), self.images
        if self.world_size > 1:  # this process's classes only (the draws above were the same everywhere)
            mine = self.my_classes()
            real, syn, c = real[mine.start:mine.stop], syn[mine.start * ipc:mine.stop * ipc], len(mine)
        real, syn = self.augment_pair(real.flatten(0, 1), syn)
        if c == 0:  # more processes than classes: nothing to match here
            return {"dm": self.update_images(self.images.sum() * 0)}
        real_emb = self.real_embeddings(net, real).view(c, n, -1)
        syn_emb = embed(net, syn).view(c, ipc, -1)
        loss = mean_embedding_distance(real_emb, syn_emb)
        return {"dm": self.update_images(loss)}
