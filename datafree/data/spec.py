"""DataSpec: everything a model, generator or checkpoint needs to know about its input space."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from datafree.errors import DatafreeError


@dataclass(frozen=True)
class DataSpec:
    """Shape, label space and normalisation of a dataset.

    Models consume *normalised* tensors ``(x - mean) / std``; the spec travels with every
    checkpoint so a teacher is never fed inputs in the wrong space.
    """

    channels: int
    height: int
    width: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = field(default=())
    name: str = ""

    def __post_init__(self) -> None:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DatafreeError(
                f"DataSpec: mean/std need {self.channels} values, got {len(self.mean)}/{len(self.std)}"
            )
        if self.class_names and len(self.class_names) != self.num_classes:
            raise DatafreeError(
                f"DataSpec: {len(self.class_names)} class names for {self.num_classes} classes"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(-1, 1, 1)
        return mean, std

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map images in [0, 1] to the model's input space."""
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map model inputs back to [0, 1] pixel space (for image grids and audits)."""
        mean, std = self._stats(x)
        return x * std + mean

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"], d["class_names"] = list(self.mean), list(self.std), list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        try:
            return cls(
                channels=int(d["channels"]),
                height=int(d["height"]),
                width=int(d["width"]),
                num_classes=int(d["num_classes"]),
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                class_names=tuple(d.get("class_names", ())),
                name=str(d.get("name", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DatafreeError(f"invalid DataSpec {d!r}: {e}") from None


FASHION_MNIST = DataSpec(
    1, 28, 28, 10, (0.2861,), (0.3530,),
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "fashion-mnist",
)
MNIST = DataSpec(1, 28, 28, 10, (0.1307,), (0.3081,), tuple(str(i) for i in range(10)), "mnist")
CIFAR10 = DataSpec(
    3, 32, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
    ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "cifar10",
)
CIFAR100 = DataSpec(
    3, 32, 32, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), (), "cifar100"
)
KNOWN_SPECS: dict[str, DataSpec] = {s.name: s for s in (FASHION_MNIST, MNIST, CIFAR10, CIFAR100)}
"""The datasets whose spec is known without their files (``--dataset NAME`` for a teacher's input)."""


def check_compatible(teacher: DataSpec, data: DataSpec, what: str = "teacher", other: str = "the dataset") -> None:
    """Raise one line when ``data`` is not the input space ``teacher`` was trained in.

    Shape, class count and normalisation must agree; names and class names may differ.
    """
    if teacher.shape != data.shape or teacher.num_classes != data.num_classes:
        raise DatafreeError(
            f"{what} expects {teacher.shape} inputs and {teacher.num_classes} classes, "
            f"{other} has {data.shape} and {data.num_classes}"
        )
    if tuple(teacher.mean) != tuple(data.mean) or tuple(teacher.std) != tuple(data.std):
        raise DatafreeError(
            f"{what} was trained with normalisation mean={teacher.mean} std={teacher.std}, "
            f"{other} uses mean={data.mean} std={data.std}"
        )
