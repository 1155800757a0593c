"""DM (Zhao & Bilen, 2023): match each class's mean embedding under random networks.

No inner loop and no second-order gradients, which makes it the cheapest method. All classes
go through the network in one batch; per-class means come from a reshape, not a Python loop.
The siamese augmentation draw is shared by all classes of an iteration (the reference draws
one per class); real and synthetic images still see the same transform.

Under torchrun every process draws the same network, real batch and augmentation, embeds only
its own classes, and the image gradients are summed (:meth:`Condenser.update_images`).
"""

from __future__ import annotations

import torch

from datafree.condense.base import Condenser
from datafree.hooks import embed
from datafree.losses import mean_embedding_distance


class DM(Condenser):
    splits_classes = True

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
        with torch.no_grad():
            real_emb = embed(net, real).view(c, n, -1)
        syn_emb = embed(net, syn).view(c, ipc, -1)
        loss = mean_embedding_distance(real_emb, syn_emb)
        return {"dm": self.update_images(loss)}
