"""The evaluation protocol of condensed sets: train fresh networks on the set, test on real data.

``dc`` is the reference protocol of the DatasetCondensation code (``evaluate_synset``): a
freshly initialised ConvNet-3 (width 128, instance norm) per model, SGD lr 0.01 with plain
momentum 0.9, weight decay 5e-4, batch 256, lr x0.1 at half; 1000 epochs with DSA augmentation
(300 without); the **last** epoch's test accuracy; mean and std over ``models`` networks.
``kd`` trains the same way on the teacher's soft labels through the shared trainer
(``alpha=0``, temperature ``T``), the live teacher seeing the augmented images.
The protocol is returned with the result, so a number never travels without its recipe.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from datafree.data.spec import DataSpec
from datafree.errors import DatafreeError
from datafree.models import build_model
from datafree.train import TrainConfig, Trainer, evaluate, peak_memory_mb

PROTOCOLS = ("dc", "kd")


@dataclass
class EvalProtocol:
    name: str = "dc"  # dc (hard labels) | kd (teacher soft labels)
    arch: str = "convnet"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    models: int = 5
    augment: str = "dsa"  # dsa | none | crop | crop-flip
    epochs: int = 0  # 0 = the reference: 1000 with DSA augmentation, 300 without
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 256
    temperature: float = 4.0  # kd only
    seed: int = 0  # model i is initialised and trained with seed + i

    def __post_init__(self) -> None:
        if self.name not in PROTOCOLS:
            raise DatafreeError(f"unknown evaluation protocol {self.name!r}; choose one of {', '.join(PROTOCOLS)}")
        if self.models < 1:
            raise DatafreeError("evaluate at least one model")
        if self.epochs == 0:
            self.epochs = 1000 if self.augment == "dsa" else 300

    def train_config(self, seed: int, device: str) -> TrainConfig:
        kd = self.name == "kd"
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer="sgd", lr=self.lr,
                           momentum=self.momentum, nesterov=False, weight_decay=self.weight_decay, schedule="step",
                           milestones=(0.5,), gamma=0.1, alpha=0.0 if kd else 1.0, temperature=self.temperature,
                           augment=self.augment, seed=seed, device=device, progress=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_set(train: Dataset, spec: DataSpec, test: Dataset, protocol: EvalProtocol, *,
                 teacher: nn.Module | None = None, device: str = "cpu", progress: bool = True,
                 done: Sequence[tuple[float, float]] = (),
                 on_model: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train ``protocol.models`` fresh networks on ``train`` and test each on ``test`` (last epoch).

    ``done`` holds (accuracy, seconds) of models 0..k-1 from an earlier call with the same protocol:
    they are kept and training starts at model k (model i always uses seed + i, so extending 3
    models to 5 gives the same numbers as 5 at once). ``on_model`` gets the partial result after
    every model, so a long evaluation can be saved as it goes.
    """
    if protocol.name == "kd" and teacher is None and not getattr(train, "soft_labels", False):
        raise DatafreeError("the kd protocol needs --teacher or a set with teacher logits")
    if len(done) > protocol.models:
        raise DatafreeError(f"{len(done)} models are already evaluated, more than the {protocol.models} asked for")
    accuracies, times = [a for a, _ in done], [t for _, t in done]
    bar = tqdm(range(len(done), protocol.models), desc=f"evaluate ({protocol.name}, {protocol.arch})", unit="model",
               disable=not progress, dynamic_ncols=True)
    peak = 0.0
    for i in bar:
        seed = protocol.seed + i
        model = build_model(protocol.arch, spec, seed=seed, **protocol.arch_kwargs)
        trainer = Trainer(model, protocol.train_config(seed, device), teacher=teacher if protocol.name == "kd" else None)
        t0 = time.perf_counter()
        try:
            trainer.fit(train)
        finally:
            trainer.close()
        times.append(time.perf_counter() - t0)
        accuracies.append(evaluate(model, test, device=device)["accuracy"])
        peak = peak_memory_mb(torch.device(device))
        bar.set_postfix(acc=f"{accuracies[-1]:.2f}")
        if on_model is not None and len(accuracies) < protocol.models:
            on_model(_result(accuracies, times, peak, train, protocol))
    return _result(accuracies, times, peak, train, protocol)


def _result(accuracies: list[float], times: list[float], peak: float, train: Dataset,
            protocol: EvalProtocol) -> dict[str, Any]:
    return {
        "accuracy_mean": statistics.fmean(accuracies),
        "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
        "accuracies": accuracies,
        "train_times_s": times,
        "train_time_s_per_model": statistics.fmean(times),
        "peak_memory_mb": peak,
        "images": len(train),  # type: ignore[arg-type]
        "models_done": len(accuracies),
        "complete": len(accuracies) == protocol.models,
        "protocol": protocol.to_dict(),
    }
