"""What every condensation method shares: the synthetic set, its optimiser, fresh networks.

A method subclasses :class:`Condenser` and implements :meth:`step` (one outer iteration).
All randomness comes from the ``rng`` the driver passes in, so a run is reproducible and a
resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from datafree import distributed
from datafree.condense.config import CondenseConfig
from datafree.condense.real import ClassPool
from datafree.data.augment import DSA
from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.models import build_model
from datafree.seeding import draw_seed


class Condenser:
    """Owns the synthetic images (``C * ipc``, grouped by class) and how they are updated."""

    needs_real = True
    #: the config dataclass of the methods this condenser runs: CondenseConfig, or a subclass with its own settings
    config_class: ClassVar[type[CondenseConfig]] = CondenseConfig
    #: under torchrun, whether each process can match only its own classes (see :meth:`my_classes`)
    splits_classes = False
    rank, world_size = 0, 1

    def __init__(self, config: CondenseConfig, spec: DataSpec, rng: torch.Generator, *,
                 pool: ClassPool | None = None, teacher: nn.Module | None = None,
                 device: str | torch.device = "cpu") -> None:
        if self.needs_real and pool is None:
            raise DatafreeError(f"{config.method} matches real data: pass a dataset")
        self.config, self.spec, self.rng, self.pool = config, spec, rng, pool
        self.teacher = teacher
        self.device = torch.device(device)
        c = spec.num_classes
        self.labels = torch.arange(c).repeat_interleave(config.ipc)
        self.images = nn.Parameter(self.initial_images().to(self.device))
        self.dsa = DSA(config.dsa_strategy) if config.dsa else None
        self.optimizer = self.make_optimizer()

    def initial_images(self) -> torch.Tensor:
        """Real images of each class (a random draw), or Gaussian noise in normalised space."""
        c, ipc = self.spec.num_classes, self.config.ipc
        if self.config.init == "real" and self.pool is not None:
            return self.pool.sample(ipc, self.rng).reshape(c * ipc, *self.spec.shape).clone()
        return torch.randn(c * ipc, *self.spec.shape, generator=self.rng)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.images], lr=self.config.lr_img, momentum=self.config.momentum_img)

    def fresh_net(self) -> nn.Module:
        """A randomly initialised matching network (seeded from ``rng``)."""
        c = self.config
        return build_model(c.net, self.spec, seed=draw_seed(self.rng), **c.net_kwargs).to(self.device)

    def real_batch(self, n: int) -> torch.Tensor:
        """``(C, n, *shape)`` real images on the device."""
        assert self.pool is not None
        return self.pool.sample(n, self.rng).to(self.device)

    def augment_pair(self, real: torch.Tensor, synthetic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Siamese augmentation: one parameter draw applied to both batches (identity without DSA)."""
        if self.dsa is None:
            return real, synthetic
        params = self.dsa.sample(self.rng)
        return self.dsa.apply(real, params), self.dsa.apply(synthetic, params)

    def step(self) -> dict[str, float]:
        """One outer iteration; returns the named losses."""
        raise NotImplementedError

    @classmethod
    def check_world_size(cls, method: str, world_size: int) -> None:
        if world_size > 1 and not cls.splits_classes:
            raise DatafreeError(f"condense --method {method} runs in one process; under torchrun "
                                "only dm, dc and dsa split their classes across processes")

    def split_classes(self, rank: int, world_size: int) -> None:
        """Match only this process's classes (every process draws everything, so all stay in step)."""
        self.check_world_size(self.config.method, world_size)
        self.rank, self.world_size = rank, world_size

    def my_classes(self) -> range:
        """This process's contiguous block of classes (all of them in a single process)."""
        c = self.spec.num_classes
        return range(c * self.rank // self.world_size, c * (self.rank + 1) // self.world_size)

    def update_images(self, loss: torch.Tensor) -> float:
        """One optimiser step on the images from ``loss``; returns the loss (summed over processes).

        Under torchrun each process's ``loss`` covers only its classes, so its image gradient is
        zero elsewhere: the summed gradient is the single-process one, and every process takes the
        same step on the same images.
        """
        if self.world_size > 1:
            total = distributed.all_reduce_sum(loss.detach().float().reshape(()).clone())
            if not torch.isfinite(total):
                raise DatafreeError(f"non-finite {self.config.method} loss ({total.item()}); "
                                    "lower lr_img with --set lr_img=...; the last saved state is intact")
            self.optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad:
                loss.backward()
            grad = self.images.grad if self.images.grad is not None else torch.zeros_like(self.images)
            self.images.grad = distributed.all_reduce_sum(grad)
            self.optimizer.step()
            return total.item()
        if not torch.isfinite(loss):
            raise DatafreeError(f"non-finite {self.config.method} loss ({loss.item()}); "
                                "lower lr_img with --set lr_img=...; the last saved state is intact")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The synthetic images (normalised, on the CPU) and their class labels."""
        return self.images.detach().cpu().clone(), self.labels.clone()

    def extra_fields(self) -> dict[str, Any]:
        """Method-specific values to record in the manifest (e.g. MTT's learned learning rate)."""
        return {}

    def finish(self, out: Path, seed: int) -> dict[str, Any]:
        """Work done once the last iteration is reached (e.g. relabelling); returns manifest fields."""
        return {}

    def close(self) -> None:
        """Release hooks or other resources a method holds."""

    def state_dict(self) -> dict[str, Any]:
        return {"images": self.images.detach().cpu().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.images.copy_(state["images"].to(self.device))
        self.optimizer.load_state_dict(state["optimizer"])
