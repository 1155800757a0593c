"""DM (Zhao & Bilen, 2023): match each class's mean embedding under random networks.

No inner loop and no second-order gradients, which makes it the cheapest method. All classes
go through the network in one batch; per-class means come from a reshape, not a Python loop.
The siamese augmentation draw is shared by all classes of an iteration (the reference draws
one per class); real and synthetic images still see the same transform.
"""

from __future__ import annotations

import torch

from datafree.condense.base import Condenser, embed
from datafree.losses import mean_embedding_distance


class DM(Condenser):
    def step(self) -> dict[str, float]:
        c, ipc, n = self.spec.num_classes, self.config.ipc, self.config.batch_real
        net = self.fresh_net().train().requires_grad_(False)
        real = self.real_batch(n).flatten(0, 1)
        real, syn = self.augment_pair(real, self.images)
        with torch.no_grad():
            real_emb = embed(net, real).view(c, n, -1)
        syn_emb = embed(net, syn).view(c, ipc, -1)
        loss = mean_embedding_distance(real_emb, syn_emb)
        self.update_images(loss)
        return {"dm": loss.item()}
