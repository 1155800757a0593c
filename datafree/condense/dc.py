"""DC (Zhao et al., 2021) and DSA: match the gradients a fresh network gets from real and
synthetic images of each class, while that network trains on the synthetic set.

Per outer loop, one image update from the per-class gradient distances, then ``inner_loop``
epochs of network training on the (detached) synthetic set. Classes are matched one at a
time (each needs its own gradient; this also bounds memory to one class's graph).

Under torchrun each process matches its own classes (drawing the others' augmentations too, so
every process's random stream stays in step), the image gradients are summed, and every process
trains the same network on the same images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from datafree.condense.base import Condenser
from datafree.condense.config import CondenseConfig
from datafree.losses import gradient_match_distance
from datafree.models.im2col import im2col_single_channel_convs


@dataclass
class DCConfig(CondenseConfig):
    """DC / DSA: outer loops over fresh networks' training, inner loops of network updates."""

    outer_loop: int = 0  # 0 = the reference's per-IPC default
    inner_loop: int = 0
    lr_net: float = 0.01
    batch_train: int = 256
    # bfloat16 autocast for the first-order passes (the real images' gradients, the inner loop's training), which
    # are nearly all of a step's time; the synthetic images' second-order pass, whose gradient moves the images,
    # stays float32. Off by default: only faster where the CPU or GPU has native bfloat16 (docs/condensation.md)
    bf16: bool = False
    # torch.compile of the first-order passes' loss (inductor fuses norm, ReLU and pooling; one compilation serves
    # every fresh network); the second-order pass stays eager (compiled graphs have no double backward). Grayscale
    # input convolutions then run as unfold + matmul (datafree.models.im2col), which compiles to a faster step
    compile: bool = False

    @property
    def loops(self) -> tuple[int, int]:
        """(outer, inner) loops: the reference's table per IPC unless set."""
        table = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}
        outer, inner = table.get(self.ipc, (10, 50))
        return self.outer_loop or outer, self.inner_loop or inner


def _class_loss(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(net(x).float(), y)


class DC(Condenser):
    config_class = DCConfig
    splits_classes = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._first_order_loss: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] = (
            torch.compile(_class_loss, dynamic=False) if self.config.compile else _class_loss)

    def fresh_net(self) -> torch.nn.Module:
        net = super().fresh_net()
        if self.config.compile:
            im2col_single_channel_convs(net)
        return net

    def step(self) -> dict[str, float]:
        cfg = self.config
        c, ipc = self.spec.num_classes, cfg.ipc
        outer, inner = cfg.loops
        net = self.fresh_net().train()
        params = [p for p in net.parameters() if p.requires_grad]
        net_opt = torch.optim.SGD(params, lr=cfg.lr_net)
        total = 0.0
        mine = self.my_classes()
        for ol in range(outer):
            real = self.real_batch(cfg.batch_real)
            loss = torch.zeros((), device=self.device)
            for k in range(c):
                if k not in mine:  # another process's class: only its augmentation draw
                    if self.dsa is not None:
                        self.dsa.sample(self.rng)
                    continue
                target_real = torch.full((cfg.batch_real,), k, device=self.device)
                target_syn = torch.full((ipc,), k, device=self.device)
                xr, xs = self.augment_pair(real[k], self.images[k * ipc:(k + 1) * ipc])
                with self.first_order_precision():
                    g_real = torch.autograd.grad(self._first_order_loss(net, xr, target_real), params)
                g_real = [g.detach() for g in g_real]
                g_syn = torch.autograd.grad(F.cross_entropy(net(xs), target_syn), params, create_graph=True)
                loss = loss + gradient_match_distance(g_real, g_syn)
            total += self.update_images(loss)
            if ol == outer - 1:
                break
            self.train_net(net, net_opt, inner)
        return {"dc": total / outer}

    def first_order_precision(self) -> torch.autocast:
        """bfloat16 autocast when ``bf16`` is set, else a no-op context."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16)

    def train_net(self, net: torch.nn.Module, optimizer: torch.optim.Optimizer, epochs: int) -> None:
        """``epochs`` passes over the synthetic set (augmented like the matching, with DSA)."""
        images, labels = self.images.detach(), self.labels.to(self.device)
        b = self.config.batch_train
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=self.rng).to(self.device)
            for idx in order.split(b):
                x, y = images[idx], labels[idx]
                if self.dsa is not None:
                    x = self.dsa.apply(x, self.dsa.sample(self.rng))
                with self.first_order_precision():
                    loss = self._first_order_loss(net, x, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
